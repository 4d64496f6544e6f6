//! `kiln-manifest`: parse, validate, plan and apply deployment manifests.
