//! Names libbpf gives an object's maps, and the pin names derived from them.
//!
//! Global data maps are named after their ELF sections (`.rodata`,
//! `.rodata.str1.1`, `.data.A`, `.kconfig`), which the kernel's 15-byte
//! object names cannot always hold and bpffs refuses as file names (no
//! `.` allowed). libbpf's rules (`internal_map_name`, `sanitize_pin_path`)
//! decide what users and tools see, so Kiln follows them exactly.

use std::path::Path;

use crate::{MapOrigin, MapSpec, ObjectSpec};

/// `BPF_OBJ_NAME_LEN`: kernel object names hold 15 bytes and a NUL.
pub const BPF_OBJ_NAME_LEN: usize = 16;

/// Two maps of one object that would be pinned under the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "maps '{first}' and '{second}' would both be pinned as '{pin_name}' (bpffs names cannot hold '.', so libbpf's rule turns it into '_'): rename one of them"
)]
pub struct PinNameCollision {
    /// The shared pin name.
    pub pin_name: String,
    /// One map.
    pub first: String,
    /// The other map.
    pub second: String,
}

/// The name libbpf gives an object opened from `path` (`bpf_object__open`):
/// the file name cut to 15 bytes, then at its first `.` (`x.bpf.o` → `x`).
///
/// ```
/// use std::path::Path;
///
/// assert_eq!(kiln_obj::object_name_from_path(Path::new("/tmp/exectrace.bpf.o")), "exectrace");
/// // libbpf names the global data maps after it, and pins them under that name.
/// assert_eq!(kiln_obj::global_data_pin_name("exectrace", ".rodata"), "exectrac_rodata");
/// ```
pub fn object_name_from_path(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut bytes: Vec<u8> = file.into_bytes();
    bytes.truncate(BPF_OBJ_NAME_LEN - 1);
    if let Some(dot) = bytes.iter().position(|&b| b == b'.') {
        bytes.truncate(dot);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// libbpf's `internal_map_name`: the name of the map of global data section
/// `section` in object `object_name`. Up to 15 bytes: as much of the object
/// name as fits before the section name (which keeps at least 7 bytes), no
/// object name at all for sections with a second dot (`.rodata.str1.1`),
/// every byte other than letters, digits, `_` and `.` made `_`.
fn internal_map_name(object_name: &str, section: &str) -> String {
    let max = BPF_OBJ_NAME_LEN - 1;
    let sfx_len = section.len().max(7).min(max);
    let custom = section.get(1..).is_some_and(|rest| rest.contains('.'));
    let pfx_len = if custom {
        0
    } else {
        (max - sfx_len).min(object_name.len())
    };
    let mut name: Vec<u8> = object_name.as_bytes()[..pfx_len].to_vec();
    name.extend(section.bytes().take(sfx_len));
    name.truncate(max);
    name.iter_mut()
        .filter(|b| !(b.is_ascii_alphanumeric() || **b == b'_' || **b == b'.'))
        .for_each(|b| *b = b'_');
    String::from_utf8_lossy(&name).into_owned()
}

/// [`MapSpec::pin_name`] of the global data map of `section` (`.rodata`,
/// `.data.A`, `.kconfig`...) in object `object_name`, for callers that have
/// the section rather than the map.
pub fn global_data_pin_name(object_name: &str, section: &str) -> String {
    internal_map_name(object_name, section).replace('.', "_")
}

impl MapSpec {
    /// The map's name as libbpf reports it and gives it to the kernel
    /// (`bpf_map__name`) when the object is named `object_name` (see
    /// [`object_name_from_path`]): global data maps get libbpf's internal
    /// name (`counter.rodata`, `.rodata.str1.1`, `counter.kconfig`), every
    /// other map keeps its own.
    pub fn libbpf_name(&self, object_name: &str) -> String {
        match &self.origin {
            MapOrigin::GlobalData { section } => internal_map_name(object_name, section),
            MapOrigin::BtfMaps | MapOrigin::Legacy => self.name.clone(),
        }
    }

    /// The file name this map is pinned under in a pin directory, for an
    /// object named `object_name`: [`MapSpec::libbpf_name`] with every `.`
    /// made `_` (libbpf's `sanitize_pin_path`; bpffs refuses dots), so
    /// `.rodata.str1.1` pins as `_rodata_str1_1` and `.kconfig` of object
    /// `counter` as `counter_kconfig`, as `bpftool prog loadall ... pinmaps`
    /// does. The one rule for every pin of an object's map: `kiln object
    /// load --pin-dir`, the loader's `LIBBPF_PIN_BY_NAME` pins and the
    /// manifest's pin layout. [`ObjectSpec::map_pin_names`] checks that no
    /// two maps of an object share one.
    pub fn pin_name(&self, object_name: &str) -> String {
        match &self.origin {
            MapOrigin::GlobalData { section } => global_data_pin_name(object_name, section),
            MapOrigin::BtfMaps | MapOrigin::Legacy => self.name.replace('.', "_"),
        }
    }
}

impl ObjectSpec {
    /// [`MapSpec::pin_name`] of every map, in [`ObjectSpec::maps`] order, or
    /// the first two maps that would share a pin.
    pub fn map_pin_names(&self, object_name: &str) -> Result<Vec<String>, PinNameCollision> {
        let names: Vec<String> = self.maps.iter().map(|m| m.pin_name(object_name)).collect();
        let mut sorted: Vec<(&str, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            let (a, b) = (w[0].1.min(w[1].1), w[0].1.max(w[1].1));
            return Err(PinNameCollision {
                pin_name: names[a].clone(),
                first: self.maps[a].name.clone(),
                second: self.maps[b].name.clone(),
            });
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(section: &str) -> MapSpec {
        crate::maps::new_map(
            section,
            MapOrigin::GlobalData {
                section: section.into(),
            },
        )
    }

    #[test]
    fn object_names_follow_libbpf() {
        assert_eq!(
            object_name_from_path(Path::new("/a/b/dropin.bpf.o")),
            "dropin"
        );
        assert_eq!(object_name_from_path(Path::new("x.o")), "x");
        assert_eq!(
            object_name_from_path(Path::new("a_very_long_object_name.o")),
            "a_very_long_obj"
        );
    }

    /// The examples of libbpf's own comment in `internal_map_name`, and
    /// what bpftool 7 pinned for `dropin.bpf.o`.
    #[test]
    fn internal_names_follow_libbpf() {
        assert_eq!(
            internal_map_name("my_object_name", ".rodata"),
            "my_objec.rodata"
        );
        assert_eq!(internal_map_name("my_object_name", ".bss"), "my_objec.bss");
        assert_eq!(
            internal_map_name("my_object_name", ".kconfig"),
            "my_obje.kconfig"
        );
        assert_eq!(
            internal_map_name("my_object_name", ".rodata.abracadabra"),
            ".rodata.abracad"
        );
        assert_eq!(
            internal_map_name("dropin", ".rodata.str1.1"),
            ".rodata.str1.1"
        );
        assert_eq!(internal_map_name("dropin", ".kconfig"), "dropin.kconfig");
        assert_eq!(internal_map_name("", ".data"), ".data");
        assert_eq!(internal_map_name("a-b", ".data"), "a_b.data");
    }

    #[test]
    fn pin_names_have_no_dots() {
        assert_eq!(data(".rodata.str1.1").pin_name("dropin"), "_rodata_str1_1");
        assert_eq!(data(".rodata.cst16").pin_name("dropin"), "_rodata_cst16");
        assert_eq!(data(".bss.MASK").pin_name("dropin"), "_bss_MASK");
        assert_eq!(data(".kconfig").pin_name("dropin"), "dropin_kconfig");
        assert_eq!(data(".bss").pin_name("dropin"), "dropin_bss");
        let mut btf_map = data("events");
        btf_map.origin = MapOrigin::BtfMaps;
        assert_eq!(btf_map.pin_name("dropin"), "events");
    }

    #[test]
    fn collisions_are_refused_with_both_names() {
        let spec = ObjectSpec {
            byte_order: crate::ByteOrder::native(),
            license: String::new(),
            kernel_version: None,
            programs: Vec::new(),
            maps: vec![data(".data"), data(".data.a_b"), data(".data.a.b")],
            btf: None,
            externs: Vec::new(),
            map_slots: Vec::new(),
        };
        let err = spec.map_pin_names("obj").unwrap_err();
        assert_eq!(err.pin_name, "_data_a_b");
        assert_eq!(
            (err.first.as_str(), err.second.as_str()),
            (".data.a_b", ".data.a.b")
        );
        assert!(
            err.to_string().contains("'.data.a_b' and '.data.a.b'"),
            "{err}"
        );
        let ok = ObjectSpec {
            byte_order: crate::ByteOrder::native(),
            maps: vec![data(".data"), data(".rodata")],
            ..spec
        };
        assert_eq!(ok.map_pin_names("obj").unwrap(), ["obj_data", "obj_rodata"]);
    }
}
