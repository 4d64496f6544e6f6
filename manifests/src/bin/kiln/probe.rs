//! `kiln probe`: what this kernel supports, found by trying.

/// Prints the probed features (JSON with `json`).
pub fn run(json: bool) -> anyhow::Result<()> {
    let f = kiln_loader::probe::features();
    if json {
        outln!("{}", f.to_json());
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let list = |title: &str, items: Vec<(String, bool)>| {
        let (ok, missing): (Vec<_>, Vec<_>) = items.into_iter().partition(|(_, v)| *v);
        outln!("{title}: {} supported", ok.len());
        outln!(
            "  yes: {}",
            ok.into_iter().map(|(k, _)| k).collect::<Vec<_>>().join(" ")
        );
        if !missing.is_empty() {
            outln!(
                "  no:  {}",
                missing
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    };
    list(
        "program types",
        f.program_types
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    );
    list(
        "map types",
        f.map_types
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    );
    list(
        "helpers",
        f.helpers.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    );
    let b = f.btf;
    list(
        "btf",
        [
            ("load", f.btf_load),
            ("func", b.func),
            ("func_global", b.func_global),
            ("datasec", b.datasec),
            ("float", b.float),
            ("decl_tag", b.decl_tag),
            ("type_tag", b.type_tag),
            ("enum64", b.enum64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    outln!("bpf_link: {}", yes(f.bpf_link));
    list(
        "link kinds",
        f.link_kinds
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    );
    outln!("tcx: {}", yes(f.tcx));
    outln!("ringbuf: {}", yes(f.ringbuf));
    outln!("mmapable arrays: {}", yes(f.mmapable_arrays));
    outln!("batch ops: {}", yes(f.batch_ops));
    outln!("bpf cookie: {}", yes(f.bpf_cookie));
    outln!("prog bind map: {}", yes(f.prog_bind_map));
    Ok(())
}
