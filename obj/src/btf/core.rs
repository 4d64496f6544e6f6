//! CO-RE relocation against a target BTF (filled in below).
