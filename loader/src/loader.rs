//! The object loader: [`EbpfLoader`] turns an [`ObjectSpec`] into live maps and
//! programs ([`Ebpf`]), the way libbpf's `bpf_object__load` or cilium's
//! `NewCollectionWithOptions` do.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use kiln_obj::{MapOrigin, MapSpec, MapType, ObjectSpec, Pinning, ProgramSpec};

use crate::btf::{Btf, BtfError};
use crate::maps::{Arena, Map, MapBtf, MapError, UpdateFlags};
use crate::pin::PinError;
use crate::programs::{LoadError, LoadOptions, Program, ProgramBtf, VerifierLogLevel};

/// Errors of [`EbpfLoader::load`]; each names the map, program or global at fault.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// Creating, reusing or filling a map failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// Pinning a map, or reusing a pinned one, failed.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// The kernel refused a program (the verifier log is in the error).
    #[error(transparent)]
    Program(#[from] LoadError),
    /// The object's BTF could not be prepared or loaded.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// A global variable cannot be set or read as asked.
    #[error("global '{name}'")]
    Global {
        /// The variable.
        name: String,
        /// What is wrong.
        #[source]
        problem: GlobalProblem,
    },
    /// A map of the object cannot be set up as asked.
    #[error("map '{name}'")]
    MapSpec {
        /// The map.
        name: String,
        /// What is wrong.
        #[source]
        problem: MapSpecProblem,
    },
    /// A program's `__ksym` externs do not resolve against the kernel.
    #[error("program '{name}': ksym externs")]
    Ksym {
        /// The program.
        name: String,
        /// The extern that does not resolve.
        #[source]
        source: kiln_obj::ExternError,
    },
    /// A program calls a kfunc defined in a kernel module on a kernel too
    /// old to take module kfuncs (before 5.16).
    #[error(transparent)]
    ModuleKfunc(#[from] crate::module_btf::ModuleKfuncUnsupported),
    /// A `.values` initialiser names a map index the object does not have.
    #[error("values slot names map #{map} the object does not have")]
    SlotMap {
        /// The index into the object's maps.
        map: usize,
    },
    /// Two maps would share one pin path under `map_pin_path`.
    #[error("map pin names")]
    PinNames(#[source] kiln_obj::PinNameCollision),
    /// The object's BTF cannot be rewritten for what this kernel accepts.
    #[error("object BTF")]
    ObjectBtf(#[source] kiln_obj::btf::BtfError),
    /// CO-RE relocation against the running kernel failed.
    #[error(transparent)]
    Core(#[from] crate::externs::CoreError),
    /// A `__kconfig` extern has no value on this kernel.
    #[error("kconfig externs")]
    Kconfig(#[source] kiln_obj::ExternError),
    /// [`Ebpf::set_global`] on a constant: its data map (`.rodata`) was
    /// frozen after load.
    #[error(
        "global '{name}' is in '{map}', which is frozen after load (read-only for programs and \
         userspace): give its value before load with EbpfLoader::set_global"
    )]
    FrozenGlobal {
        /// The global's name.
        name: String,
        /// Its data map (`.rodata`, `.rodata.NAME`).
        map: String,
    },
    /// The object was built for the other byte order (`bpfeb` on a
    /// little-endian machine, `bpfel` on a big-endian one): the kernel
    /// loads programs, BTF and map values only in its own.
    #[error(
        "the object is {object} and the running kernel is {kernel}: a kernel loads eBPF of its \
         own byte order only (build the object with -target {})",
        kernel.target()
    )]
    ByteOrder {
        /// The object's byte order.
        object: kiln_obj::ByteOrder,
        /// The running kernel's.
        kernel: kiln_obj::ByteOrder,
    },
    /// The bytes given to [`EbpfLoader::load_bytes`] or [`load`] are not an
    /// eBPF object this loader reads.
    #[error("parsing the eBPF object")]
    Parse(#[source] kiln_obj::ParseError),
    /// [`EbpfLoader::load_file`] or [`load_file`] could not read the file.
    #[error("reading eBPF object {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file given to [`EbpfLoader::load_file`] is not an eBPF object this loader reads.
    #[error("parsing eBPF object {}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is malformed.
        #[source]
        source: kiln_obj::ParseError,
    },
}

/// What is wrong with a global variable ([`EbpfError::Global`]).
#[derive(Debug, thiserror::Error)]
pub enum GlobalProblem {
    /// [`EbpfLoader::set_global`] was given another number of bytes than the variable has.
    #[error("is {object} bytes in the object, {given} given")]
    SizeMismatch {
        /// The variable's size in the object.
        object: u32,
        /// The bytes given.
        given: usize,
    },
    /// No data section of the object declares the variable.
    #[error("no such global variable in the object's data sections")]
    NotInDataSections,
    /// The loaded object has no variable of this name.
    #[error("no such global variable in the object")]
    NotInObject,
    /// The Rust type's size differs from the variable's.
    #[error("is {size} bytes, the Rust type has {rust}")]
    RustSize {
        /// The variable's size.
        size: u32,
        /// `size_of` the Rust type.
        rust: usize,
    },
    /// The variable's data map was taken out of the [`Ebpf`].
    #[error("its data map '{map}' was taken")]
    MapTaken {
        /// The data map.
        map: String,
    },
    /// The data map has no element 0 (it always has one after a load).
    #[error("data map '{map}' has no element 0")]
    NoElement {
        /// The data map.
        map: String,
    },
    /// The variable's offset and size lie past the data map's value.
    #[error("lies outside its data map")]
    OutsideMap,
}

/// What is wrong with a map of the object ([`EbpfError::MapSpec`]).
#[derive(Debug, thiserror::Error)]
pub enum MapSpecProblem {
    /// A loader option names a map the object does not have.
    #[error("{option} names a map the object does not have")]
    NotInObject {
        /// The option (`replace_map`, `map_max_entries`).
        option: &'static str,
    },
    /// The arena has fewer pages than its `__arena` globals need.
    #[error("{pages} pages cannot hold {bytes} bytes of __arena globals")]
    ArenaTooSmall {
        /// The arena's pages (`max_entries`).
        pages: u32,
        /// Bytes of `__arena` globals.
        bytes: usize,
    },
    /// The arena is larger than an instruction's offset can address.
    #[error("arena larger than an instruction offset")]
    ArenaTooLarge,
    /// An `__arena` global lies beyond an instruction's offset range.
    #[error("__arena global beyond an instruction's offset range")]
    ArenaGlobalOutOfRange,
    /// The number of possible CPUs, which sizes a perf event array, is unreadable.
    #[error("cannot size a perf event array")]
    PerfEventArraySize(#[source] std::io::Error),
    /// A `.values` initialiser names a map the object does not have.
    #[error("values[{index}]: map #{map} does not exist in the object")]
    SlotMapMissing {
        /// The slot's key.
        index: u32,
        /// The index into the object's maps.
        map: usize,
    },
    /// A `.values` initialiser names a map this load did not create.
    #[error("values[{index}]: map '{map}' was not created")]
    SlotMapNotCreated {
        /// The slot's key.
        index: u32,
        /// The inner map.
        map: String,
    },
    /// A `.values` initialiser names a program the object does not have.
    #[error("values[{index}]: program '{program}' is not in the object")]
    SlotProgramMissing {
        /// The slot's key.
        index: u32,
        /// The program.
        program: String,
    },
    /// Storing a `.values` initialiser failed.
    #[error("values[{index}]: cannot store {target}")]
    SlotStore {
        /// The slot's key.
        index: u32,
        /// `map 'x'` or `program 'y'`.
        target: String,
        /// The failed update.
        #[source]
        source: Box<MapError>,
    },
    /// The map given to `replace_map` does not match the object's definition.
    #[error("replacement map does not match")]
    Replacement(#[source] Box<PinError>),
}

/// Parses and loads an eBPF object from its bytes with default options:
/// `kiln_loader::load(include_bytes!(...))`. The bytes may sit at any
/// address (misaligned input is copied). Use [`EbpfLoader`] for options.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // In a real program: include_bytes!(concat!(env!("OUT_DIR"), "/prog.bpf.o")),
/// // or kiln_build::include_object!.
/// let bytes = std::fs::read("target/bpf/counter.bpf.o")?;
/// let ebpf = kiln_loader::load(&bytes)?;
/// for (name, program) in ebpf.programs() {
///     println!("{name}: {:?}, id {}", program.program_type(), program.id());
/// }
/// # Ok(())
/// # }
/// ```
pub fn load(bytes: &[u8]) -> Result<Ebpf, EbpfError> {
    EbpfLoader::new().load_bytes(bytes)
}

/// Reads, parses and loads the eBPF object at `path` with default options.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// match kiln_loader::load_file("target/bpf/counter.bpf.o") {
///     Ok(ebpf) => println!("{} maps", ebpf.maps().count()),
///     // A verifier rejection carries the log and the failing source line;
///     // the alternate form prints the whole chain of causes.
///     Err(e) => eprintln!("{e:#}"),
/// }
/// # Ok(())
/// # }
/// ```
pub fn load_file(path: impl AsRef<Path>) -> Result<Ebpf, EbpfError> {
    EbpfLoader::new().load_file(path)
}

/// Builder of one load. Every option edits the spec before anything reaches the kernel.
#[derive(Default)]
pub struct EbpfLoader {
    map_pin_path: Option<PathBuf>,
    globals: Vec<(String, Vec<u8>, bool)>,
    max_entries: Vec<(String, u32)>,
    replaced: BTreeMap<String, Map>,
    log_level: VerifierLogLevel,
    skipped: HashSet<String>,
    target_btf: Option<PathBuf>,
    require_btf: bool,
    object_name: String,
    token: Option<crate::Token>,
}

/// The live objects of one loaded [`ObjectSpec`].
#[derive(Debug, Default)]
pub struct Ebpf {
    maps: BTreeMap<String, Map>,
    programs: BTreeMap<String, Program>,
    btf: Option<Btf>,
    /// Maps reused from a pin rather than created.
    reused: Vec<String>,
    /// Global variables: name → (data map name, offset, size).
    globals: BTreeMap<String, (String, u32, u32)>,
    /// The user-space mapping of each arena map, by map name.
    arenas: BTreeMap<String, Arena<Map>>,
    /// Why the programs were loaded without the object's BTF (only on a
    /// kernel without BTF support).
    btf_dropped: Option<String>,
    /// Programs left for a later load against their target (struct_ops,
    /// freplace, skipped ones), prepared like the loaded ones: CO-RE
    /// relocated, externs resolved.
    deferred: BTreeMap<String, ProgramSpec>,
}

impl EbpfLoader {
    /// A loader with default options: no pins, the object's own globals and sizes, verifier log only on failure.
    pub fn new() -> Self {
        Self::default()
    }

    /// The object's name, as libbpf derives it from the file name
    /// ([`kiln_obj::object_name_from_path`]): global data maps get libbpf's
    /// names from it in the kernel (`counter.rodata`) and in pins
    /// ([`MapSpec::pin_name`]). Default: none (`.rodata`).
    pub fn object_name(&mut self, name: &str) -> &mut Self {
        self.object_name = name.to_owned();
        self
    }

    /// Pins maps marked `LIBBPF_PIN_BY_NAME` as `<dir>/<pin name>`
    /// ([`MapSpec::pin_name`]), reusing a compatible map already pinned there.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The first run creates and pins the maps; later runs (or other
    /// // processes) reuse them, so counts survive a restart.
    /// let ebpf = kiln_loader::EbpfLoader::new()
    ///     .map_pin_path("/sys/fs/bpf/myapp")
    ///     .load_file("target/bpf/counter.bpf.o")?;
    /// // Any map or program can also be pinned by hand.
    /// ebpf.map("COUNTERS").ok_or("no map")?.pin("/sys/fs/bpf/myapp-counters".as_ref())?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_pin_path(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.map_pin_path = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets a global variable's initial value (a `const volatile` in `.rodata`
    /// or a variable in `.data`/`.bss`). `bytes` must be exactly the variable's size.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // In the program: `static TARGET_TGID: Global<u32> = Global::new(0);`
    /// // (kiln-ebpf) or `const volatile __u32 target_tgid = 0;` (C).
    /// let ebpf = kiln_loader::EbpfLoader::new()
    ///     .set_global("TARGET_TGID", &std::process::id().to_ne_bytes())
    ///     .load_file("target/bpf/sdk-core.bpf.o")?;
    /// # let _ = ebpf;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_global(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        self.globals.push((name.to_owned(), bytes.to_vec(), true));
        self
    }

    /// Like [`EbpfLoader::set_global`], but a missing variable is not an error
    /// (for settings an object may or may not have).
    pub fn set_global_if_present(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        self.globals.push((name.to_owned(), bytes.to_vec(), false));
        self
    }

    /// Overrides the `max_entries` of map `name` (a ring buffer's size in bytes).
    pub fn map_max_entries(&mut self, name: &str, n: u32) -> &mut Self {
        self.max_entries.push((name.to_owned(), n));
        self
    }

    /// Uses `map` instead of creating the object's map `name` (sharing a map
    /// between objects). Its type and sizes are checked against the object's.
    pub fn replace_map(&mut self, name: &str, map: Map) -> &mut Self {
        self.replaced.insert(name.to_owned(), map);
        self
    }

    /// How much the verifier logs. A failed load always carries the log.
    pub fn verifier_log_level(&mut self, level: VerifierLogLevel) -> &mut Self {
        self.log_level = level;
        self
    }

    /// Does not load program `name` (its maps are still created).
    pub fn skip_program(&mut self, name: &str) -> &mut Self {
        self.skipped.insert(name.to_owned());
        self
    }

    /// The kernel BTF to resolve `__ksym` externs (and, once kiln-obj applies
    /// them, CO-RE relocations) against (default: /sys/kernel/btf/vmlinux).
    pub fn btf(&mut self, target: impl AsRef<Path>) -> &mut Self {
        self.target_btf = Some(target.as_ref().to_owned());
        self
    }

    /// Fails the load when the kernel refuses the object's BTF even where the
    /// kernel has no BTF support at all (by default only that case loads
    /// without BTF, with a warning on stderr and [`Ebpf::btf_dropped`] set;
    /// a kernel with BTF support that refuses the object's BTF always fails
    /// the load).
    pub fn require_btf(&mut self, yes: bool) -> &mut Self {
        self.require_btf = yes;
        self
    }

    /// Loads everything; the first failure aborts (created maps are closed,
    /// pins made by this load are removed).
    pub fn load(&mut self, spec: &ObjectSpec) -> Result<Ebpf, EbpfError> {
        self.load_inner(spec, false, false).map(|(ebpf, _)| ebpf)
    }

    /// Parses `bytes` as an eBPF ELF object and loads it like [`Self::load`].
    /// Misaligned bytes (an `include_bytes!` without an aligned wrapper) are
    /// copied, not refused.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<Ebpf, EbpfError> {
        let spec = ObjectSpec::parse(bytes).map_err(EbpfError::Parse)?;
        self.load(&spec)
    }

    /// Reads the eBPF object at `path` and loads it like [`Self::load`];
    /// errors name the file.
    pub fn load_file(&mut self, path: impl AsRef<Path>) -> Result<Ebpf, EbpfError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EbpfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let spec = ObjectSpec::parse(&bytes).map_err(|source| EbpfError::ParseFile {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(&spec)
    }

    /// Creates the maps, BTF and programs through `token` (kernel 6.9+).
    pub fn token(&mut self, token: crate::Token) -> &mut Self {
        self.token = Some(token);
        self
    }

    /// Loads every program it can (like `bpftool prog loadall`): maps must all
    /// succeed; program failures are returned beside the loaded object.
    pub fn load_each(
        &mut self,
        spec: &ObjectSpec,
    ) -> Result<(Ebpf, Vec<(String, LoadError)>), EbpfError> {
        self.load_inner(spec, true, false)
    }

    fn load_inner(
        &mut self,
        spec: &ObjectSpec,
        keep_going: bool,
        prepared: bool,
    ) -> Result<(Ebpf, Vec<(String, LoadError)>), EbpfError> {
        match self.token.clone() {
            Some(token) => token.scope(|| self.load_scoped(spec, keep_going, prepared)),
            None => self.load_scoped(spec, keep_going, prepared),
        }
    }

    fn load_scoped(
        &mut self,
        spec: &ObjectSpec,
        keep_going: bool,
        prepared: bool,
    ) -> Result<(Ebpf, Vec<(String, LoadError)>), EbpfError> {
        check_byte_order(spec)?;
        let mut spec = spec.clone();
        if !prepared {
            self.prepare_in_place(&mut spec)?;
        }
        self.apply_options(&mut spec)?;
        if self.map_pin_path.is_some() {
            spec.map_pin_names(&self.object_name)
                .map_err(EbpfError::PinNames)?;
        }
        let mut guard = PinGuard::default();
        let mut ebpf = Ebpf::default();

        // The object's BTF, rewritten for what this kernel's BTF loader accepts
        // (type ids stay the same, so map and func_info ids remain valid).
        let btf_bytes = spec
            .btf_for_kernel(crate::probe::btf_features())
            .map_err(EbpfError::ObjectBtf)?;
        if let Some(bytes) = btf_bytes.as_deref() {
            match Btf::load(bytes) {
                Ok(btf) => ebpf.btf = Some(btf),
                // Programs without their BTF lose func and line info, and
                // everything that needs them (kptrs, bpf_obj_new, exceptions,
                // local storage, source lines in the verifier's log): only a
                // kernel without BTF support at all may go on without it.
                Err(e) if self.require_btf || crate::probe::btf_loads() => {
                    return Err(e.into());
                }
                Err(e) => {
                    let reason = format!("this kernel has no BTF support ({})", e.sys_error());
                    eprintln!("warning: loading the programs without their BTF: {reason}");
                    ebpf.btf_dropped = Some(reason);
                }
            }
        }

        let mut replaced = std::mem::take(&mut self.replaced);
        // Maps this load created: only those get the object's `.values` slots
        // (a reused pin or a replacement map keeps what it holds, as in libbpf).
        let mut created = HashSet::new();
        for mspec in &spec.maps {
            let map = match replaced.remove(&mspec.name) {
                Some(map) => {
                    check_replacement(mspec, &map)?;
                    map
                }
                None => {
                    let (map, reused) = self.create_map(mspec, ebpf.btf.as_ref(), &mut guard)?;
                    if reused {
                        ebpf.reused.push(mspec.name.clone());
                    } else {
                        created.insert(mspec.name.as_str());
                    }
                    map
                }
            };
            for v in &mspec.variables {
                ebpf.globals
                    .insert(v.name.clone(), (mspec.name.clone(), v.offset, v.size));
            }
            ebpf.maps.insert(mspec.name.clone(), map);
        }
        if let Some(name) = replaced.keys().next() {
            return Err(EbpfError::MapSpec {
                name: name.clone(),
                problem: MapSpecProblem::NotInObject {
                    option: "replace_map",
                },
            });
        }
        // Maps of maps first (every map exists now), prog arrays once the programs are loaded.
        fill_map_slots(&spec, &ebpf, &created, SlotKind::Maps)?;
        // The kernel refuses programs that use an arena whose user address is
        // not set yet (no map_extra): mapping it now sets it, as libbpf does.
        // A reused or replaced arena may be mapped by its owner already
        // (its address is then set): no view of it here is no error.
        for mspec in spec.maps.iter().filter(|m| m.map_type == MapType::ARENA) {
            let map = ebpf.maps[&mspec.name].try_clone()?;
            match Arena::new(map) {
                Ok(arena) => {
                    if let Some(data) = mspec
                        .initial_data
                        .as_ref()
                        .filter(|_| created.contains(mspec.name.as_str()))
                    {
                        arena.write_bytes(arena_globals_offset(mspec, data.len()), data)?;
                    }
                    ebpf.arenas.insert(mspec.name.clone(), arena);
                }
                Err(e) if created.contains(mspec.name.as_str()) => return Err(e.into()),
                Err(_) => {}
            }
        }

        let map_fds: Vec<i32> = spec
            .maps
            .iter()
            .map(|m| {
                use std::os::fd::AsRawFd;
                ebpf.maps[&m.name].fd().as_raw_fd()
            })
            .collect();
        let mut failures = Vec::new();
        // Only BTF-attached programs (tp_btf, fentry, lsm, iter) need the kernel's BTF here.
        let kbtf = if spec
            .programs
            .iter()
            .any(|p| crate::links::tracing::btf_target_name(&p.kind).is_some())
        {
            crate::externs::kernel_btf(self.target_btf.as_deref()).ok()
        } else {
            None
        };
        for pspec in &spec.programs {
            if self.skipped.contains(&pspec.name) || !pspec.autoload {
                ebpf.deferred.insert(pspec.name.clone(), pspec.clone());
                continue;
            }
            // struct_ops programs take their attach target (struct type and
            // member) from the struct_ops map that references them, and
            // freplace programs from the program they replace a function of:
            // `links::struct_ops` and `links::freplace` load them.
            if matches!(
                pspec.kind,
                kiln_obj::ProgramKind::StructOps { .. } | kiln_obj::ProgramKind::Extension { .. }
            ) {
                ebpf.deferred.insert(pspec.name.clone(), pspec.clone());
                continue;
            }
            match load_program(
                pspec,
                &spec,
                &map_fds,
                ebpf.btf.as_ref().map(|b| b.fd()),
                self.log_level,
                kbtf,
                self.target_btf.is_none(),
            ) {
                Ok(prog) => {
                    bind_read_only_data(&prog, &spec, &ebpf);
                    ebpf.programs.insert(pspec.name.clone(), prog);
                }
                Err(e) if keep_going => failures.push((pspec.name.clone(), e)),
                Err(e) => return Err(e.into()),
            }
        }
        fill_map_slots(&spec, &ebpf, &created, SlotKind::Programs)?;
        guard.keep();
        Ok((ebpf, failures))
    }

    /// The object as this loader submits it to the running kernel: CO-RE
    /// relocated against the kernel's BTF, `__kconfig` and `__ksym` externs
    /// resolved. What a planner predicts program tags from; give the result
    /// to [`EbpfLoader::load_prepared`] so the load does not prepare again.
    pub fn prepare(&self, spec: &ObjectSpec) -> Result<ObjectSpec, EbpfError> {
        let mut spec = spec.clone();
        self.prepare_in_place(&mut spec)?;
        Ok(spec)
    }

    /// Like [`EbpfLoader::load`], of a spec [`EbpfLoader::prepare`] returned.
    pub fn load_prepared(&mut self, prepared: &ObjectSpec) -> Result<Ebpf, EbpfError> {
        self.load_inner(prepared, false, true).map(|(ebpf, _)| ebpf)
    }

    fn prepare_in_place(&self, spec: &mut ObjectSpec) -> Result<(), EbpfError> {
        check_byte_order(spec)?;
        if spec.programs.iter().any(|p| !p.core_relocations.is_empty()) {
            crate::externs::relocate_core(spec, self.target_btf.as_deref())
                .map_err(EbpfError::Core)?;
        }
        spec.resolve_kconfig(crate::externs::kconfig_value)
            .map_err(EbpfError::Kconfig)?;
        if spec
            .programs
            .iter()
            .any(|p| !p.extern_relocations.is_empty())
        {
            let kbtf = crate::externs::kernel_btf(self.target_btf.as_deref()).ok();
            let externs = spec.externs.clone();
            // Module BTF belongs to the running kernel: with another
            // kernel's BTF as the target, modules are not searched.
            let targets =
                crate::module_btf::resolve_ksyms(&externs, kbtf, self.target_btf.is_none())
                    .map_err(EbpfError::ModuleKfunc)?;
            for p in &mut spec.programs {
                p.resolve_ksyms(&externs, |i| targets.get(i).copied().flatten())
                    .map_err(|source| EbpfError::Ksym {
                        name: p.name.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// This load's own edits: sizes, kernel-dependent map definitions, globals.
    fn apply_options(&self, spec: &mut ObjectSpec) -> Result<(), EbpfError> {
        for (name, n) in &self.max_entries {
            let m = spec.map_mut(name).ok_or_else(|| EbpfError::MapSpec {
                name: name.clone(),
                problem: MapSpecProblem::NotInObject {
                    option: "map_max_entries",
                },
            })?;
            m.max_entries = *n;
        }
        for m in &mut spec.maps {
            finish_map_spec(m)?;
            if let Some(inner) = &mut m.inner {
                finish_map_spec(inner)?;
            }
        }
        for (name, bytes, required) in &self.globals {
            set_global(spec, name, bytes, *required)?;
        }
        place_arena_globals(spec)?;
        Ok(())
    }

    fn create_map(
        &self,
        spec: &MapSpec,
        btf: Option<&Btf>,
        guard: &mut PinGuard,
    ) -> Result<(Map, bool), EbpfError> {
        let pin_path = match (spec.pinning, &self.map_pin_path) {
            (Pinning::ByName, Some(dir)) => Some(dir.join(spec.pin_name(&self.object_name))),
            _ => None,
        };
        if let Some(path) = &pin_path {
            if let Some(map) = crate::pin::reuse_pinned_map(spec, path)? {
                return Ok((map, true));
            }
        }
        let inner = match &spec.inner {
            // With the object's BTF, as libbpf creates it: an inner local
            // storage map needs its key and value types.
            Some(inner) => Some(create_with_btf_fallback(inner, &inner.name, btf, None)?),
            None => None,
        };
        let map = create_with_btf_fallback(
            spec,
            &spec.libbpf_name(&self.object_name),
            btf,
            inner.as_ref().map(|m| m.fd()),
        )?;
        // An arena's initial data (its `__arena` globals) is copied into the
        // arena once it is mapped, not written as an element.
        if let Some(data) = spec
            .initial_data
            .as_ref()
            .filter(|_| spec.map_type != MapType::ARENA)
        {
            populate_global_data(spec, &map, data)?;
        }
        if let Some(path) = pin_path {
            map.pin(&path)?;
            guard.pins.push(path);
        }
        Ok((map, false))
    }
}

/// Binds the object's `.rodata*` maps to a loaded program, as libbpf does
/// (BPF_PROG_BIND_MAP, 5.10+): they live as long as the program, and tools
/// listing its maps (`bpftool prog show`, metadata in `.rodata`) see them
/// even where the code does not reference them. Best effort, like libbpf's.
fn bind_read_only_data(prog: &Program, spec: &ObjectSpec, ebpf: &Ebpf) {
    if !crate::probe::prog_bind_map() {
        return;
    }
    for m in spec.maps.iter().filter(|m| {
        matches!(&m.origin, MapOrigin::GlobalData { section } if section.starts_with(".rodata"))
    }) {
        if let Some(map) = ebpf.maps.get(&m.name) {
            let _ = prog.bind_map(map.fd());
        }
    }
}

/// Where an arena's `__arena` globals of `len` bytes go: at its end (the
/// last pages they fill) where the kernel allows any offset in an
/// `ld_imm64`, else at its start; libbpf's placement, for the same
/// instructions.
fn arena_globals_offset(arena: &MapSpec, len: usize) -> usize {
    let page = crate::util::page_size();
    let size = arena.max_entries as usize * page;
    if crate::probe::ldimm64_full_range_off() {
        size.saturating_sub(len.next_multiple_of(page))
    } else {
        0
    }
}

/// Moves the references to `__arena` globals to where the loader places
/// them in their arena, after checking that they fit.
fn place_arena_globals(spec: &mut ObjectSpec) -> Result<(), EbpfError> {
    let Some((index, arena)) = spec
        .maps
        .iter()
        .enumerate()
        .find(|(_, m)| m.map_type == MapType::ARENA && m.initial_data.is_some())
    else {
        return Ok(());
    };
    let len = arena.initial_data.as_ref().map_or(0, Vec::len);
    let page = crate::util::page_size();
    if len.next_multiple_of(page) > arena.max_entries as usize * page {
        return Err(EbpfError::MapSpec {
            name: arena.name.clone(),
            problem: MapSpecProblem::ArenaTooSmall {
                pages: arena.max_entries,
                bytes: len,
            },
        });
    }
    let base = u32::try_from(arena_globals_offset(arena, len)).map_err(|_| EbpfError::MapSpec {
        name: arena.name.clone(),
        problem: MapSpecProblem::ArenaTooLarge,
    })?;
    for p in &mut spec.programs {
        for r in &mut p.relocations {
            if let kiln_obj::RelocationTarget::MapValue { map, offset } = &mut r.target
                && *map == index
            {
                *offset = offset.checked_add(base).ok_or_else(|| EbpfError::MapSpec {
                    name: spec.maps[index].name.clone(),
                    problem: MapSpecProblem::ArenaGlobalOutOfRange,
                })?;
            }
        }
    }
    Ok(())
}

/// The kernel-dependent parts of a map's definition, filled in as this
/// loader creates the map: global data memory-mappable where the kernel
/// allows (so user space reads and writes variables without syscalls), a
/// perf event array sized 0 given one slot per possible CPU, a ring
/// buffer's size rounded up to a power-of-2 number of pages (the kernel
/// refuses any other; inner map templates too) (libbpf's conventions). Whoever predicts the definition of a map this loader will
/// create (a planner comparing it with a pinned one) calls this too.
pub fn finish_map_spec(m: &mut MapSpec) -> Result<(), EbpfError> {
    if matches!(m.origin, MapOrigin::GlobalData { .. }) && crate::probe::mmapable_arrays() {
        m.map_flags |= crate::maps::MapFlags::MMAPABLE.bits();
    }
    if m.map_type == MapType::PERF_EVENT_ARRAY && m.max_entries == 0 {
        m.max_entries = crate::util::nr_possible_cpus().map_err(|e| EbpfError::MapSpec {
            name: m.name.clone(),
            problem: MapSpecProblem::PerfEventArraySize(e),
        })? as u32;
    }
    if matches!(m.map_type, MapType::RINGBUF | MapType::USER_RINGBUF) {
        m.max_entries = ring_size(m.max_entries, crate::util::page_size() as u32);
    }
    Ok(())
}

/// The smallest power-of-2 multiple of `page` at least `size` (libbpf's
/// `adjust_ringbuf_sz`); 0 and sizes nothing fits stay as they are, for the
/// kernel to refuse.
fn ring_size(size: u32, page: u32) -> u32 {
    if size == 0 || page == 0 {
        return size;
    }
    if size % page == 0 && (size / page).is_power_of_two() {
        return size;
    }
    let mut n = page;
    while n <= size {
        match n.checked_mul(2) {
            Some(next) => n = next,
            None => return size,
        }
    }
    n
}

fn create_with_btf_fallback(
    spec: &MapSpec,
    kernel_name: &str,
    btf: Option<&Btf>,
    inner: Option<BorrowedFd<'_>>,
) -> Result<Map, MapError> {
    let map_btf = match (btf, spec.btf_key_type_id, spec.btf_value_type_id) {
        (Some(btf), key, Some(value)) => Some(MapBtf {
            fd: btf.fd(),
            key_type_id: key.unwrap_or(0),
            value_type_id: value,
        }),
        _ => None,
    };
    match Map::create_named(spec, kernel_name, map_btf, inner) {
        Ok(m) => Ok(m),
        // Old kernels refuse BTF for some map types: the map works without it.
        Err(_) if map_btf.is_some() => Map::create_named(spec, kernel_name, None, inner),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Maps,
    Programs,
}

/// Stores the fds of the object's `.values = { [i] = &x }` initialisers
/// ([`ObjectSpec::map_slots`]) of one kind into the maps this load created.
/// A program that was not loaded (skipped, or failed under `load_each`)
/// leaves its slot empty.
fn fill_map_slots(
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    created: &HashSet<&str>,
    kind: SlotKind,
) -> Result<(), EbpfError> {
    use std::os::fd::AsRawFd;
    for slot in &spec.map_slots {
        let outer = spec
            .maps
            .get(slot.map)
            .ok_or(EbpfError::SlotMap { map: slot.map })?;
        let index = slot.index;
        let err = |problem: MapSpecProblem| EbpfError::MapSpec {
            name: outer.name.clone(),
            problem,
        };
        let fd = match (&slot.target, kind) {
            (kiln_obj::MapSlotTarget::Map(i), SlotKind::Maps) => {
                let inner = spec
                    .maps
                    .get(*i)
                    .ok_or_else(|| err(MapSpecProblem::SlotMapMissing { index, map: *i }))?;
                ebpf.maps
                    .get(&inner.name)
                    .ok_or_else(|| {
                        err(MapSpecProblem::SlotMapNotCreated {
                            index,
                            map: inner.name.clone(),
                        })
                    })?
                    .fd()
            }
            (kiln_obj::MapSlotTarget::Program(name), SlotKind::Programs) => {
                if spec.program(name).is_none() {
                    return Err(err(MapSpecProblem::SlotProgramMissing {
                        index,
                        program: name.clone(),
                    }));
                }
                match ebpf.programs.get(name) {
                    Some(p) => p.fd(),
                    None => continue,
                }
            }
            _ => continue,
        };
        if !created.contains(outer.name.as_str()) {
            continue;
        }
        let map = &ebpf.maps[&outer.name];
        let target = match &slot.target {
            kiln_obj::MapSlotTarget::Map(i) => format!("map '{}'", spec.maps[*i].name),
            kiln_obj::MapSlotTarget::Program(name) => format!("program '{name}'"),
        };
        map.update_bytes(
            &slot.index.to_ne_bytes(),
            &(fd.as_raw_fd() as u32).to_ne_bytes(),
            UpdateFlags::ANY,
        )
        .map_err(|source| {
            err(MapSpecProblem::SlotStore {
                index,
                target,
                source: Box::new(source),
            })
        })?;
    }
    Ok(())
}

fn populate_global_data(spec: &MapSpec, map: &Map, data: &[u8]) -> Result<(), EbpfError> {
    let mut value = data.to_vec();
    value.resize(spec.value_size as usize, 0);
    map.update_bytes(&0u32.to_ne_bytes(), &value, UpdateFlags::ANY)?;
    if spec.is_read_only_data() {
        map.freeze()?;
    }
    Ok(())
}

fn check_replacement(spec: &MapSpec, map: &Map) -> Result<(), EbpfError> {
    let info = map.info()?;
    crate::pin::check_compatible(spec, &info, Path::new("(replace_map)")).map_err(|e| {
        EbpfError::MapSpec {
            name: spec.name.clone(),
            problem: MapSpecProblem::Replacement(Box::new(e)),
        }
    })
}

fn set_global(
    spec: &mut ObjectSpec,
    name: &str,
    bytes: &[u8],
    required: bool,
) -> Result<(), EbpfError> {
    for map in &mut spec.maps {
        if !matches!(map.origin, MapOrigin::GlobalData { .. }) {
            continue;
        }
        let Some(var) = map.variables.iter().find(|v| v.name == name).cloned() else {
            continue;
        };
        if var.size as usize != bytes.len() {
            return Err(EbpfError::Global {
                name: name.to_owned(),
                problem: GlobalProblem::SizeMismatch {
                    object: var.size,
                    given: bytes.len(),
                },
            });
        }
        let data = map.initial_data.get_or_insert_with(Vec::new);
        let end = (var.offset + var.size) as usize;
        if data.len() < end {
            data.resize(end.max(map.value_size as usize), 0);
        }
        data[var.offset as usize..end].copy_from_slice(bytes);
        return Ok(());
    }
    if required {
        return Err(EbpfError::Global {
            name: name.to_owned(),
            problem: GlobalProblem::NotInDataSections,
        });
    }
    Ok(())
}

fn load_program(
    pspec: &ProgramSpec,
    spec: &ObjectSpec,
    map_fds: &[i32],
    btf: Option<BorrowedFd<'_>>,
    log_level: VerifierLogLevel,
    kernel_btf: Option<&kiln_obj::btf::Btf>,
    search_modules: bool,
) -> Result<Program, LoadError> {
    // tp_btf/fentry/fexit/lsm/iter programs name their target at load time.
    // A target vmlinux lacks is looked for in the modules (libbpf's
    // `find_kernel_btf_id`), unless another kernel's BTF is the target.
    let (attach_btf_id, attach_btf_obj_fd) =
        match crate::links::tracing::btf_target_name(&pspec.kind) {
            Some((name, btf_kind)) => {
                match crate::links::tracing::vmlinux_attach_btf_id(&pspec.kind, kernel_btf) {
                    Ok(id) => (id, None),
                    Err(e) => match search_modules
                        .then(|| {
                            crate::module_btf::module_attach_target(
                                crate::module_btf::module_btfs(),
                                &pspec.kind,
                                &name,
                                btf_kind,
                            )
                        })
                        .flatten()
                    {
                        Some((fd, id)) => (Some(id), Some(fd)),
                        None => {
                            return Err(LoadError::AttachTarget {
                                program: pspec.name.clone(),
                                source: e,
                            });
                        }
                    },
                }
            }
            None => None.unzip(),
        };
    let mut insns = pspec.resolved_insns(|i| map_fds.get(i).copied().unwrap_or(-1));
    let fd_array = crate::module_btf::object_fd_array(spec, &mut insns);
    let (func_info, line_info) = (pspec.func_info_bytes(), pspec.line_info_bytes());
    let source_line = |insn: u32| spec.source_line(&pspec.name, insn as usize);
    let opts = LoadOptions {
        btf: btf.map(|fd| ProgramBtf {
            fd,
            func_info: &func_info,
            func_info_rec_size: kiln_obj::FUNC_INFO_REC_SIZE,
            line_info: &line_info,
            line_info_rec_size: kiln_obj::LINE_INFO_REC_SIZE,
        }),
        source_line: Some(&source_line),
        license: &spec.license,
        kern_version: spec.kernel_version,
        attach_btf_id,
        attach_btf_obj_fd,
        fd_array: fd_array.as_deref(),
        // `syscall` programs are sleepable by definition (the kernel insists).
        flags: if pspec.sleepable || pspec.kind == kiln_obj::ProgramKind::Syscall {
            crate::programs::ProgramFlags::SLEEPABLE
        } else {
            crate::programs::ProgramFlags::empty()
        },
        log_level,
        ..Default::default()
    };
    Program::load(&pspec.name, pspec.kind.clone(), &insns, &opts)
}

/// Removes the pins a failed load created, so a retry starts clean.
#[derive(Default)]
struct PinGuard {
    pins: Vec<PathBuf>,
}

impl PinGuard {
    fn keep(&mut self) {
        self.pins.clear();
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        for p in &self.pins {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Ebpf {
    /// The map `name` (global data maps by section: `.rodata`, `.bss`, ...).
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.get(name)
    }
    /// The map `name`, mutably.
    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.get_mut(name)
    }
    /// Takes map `name` out of the object, to own it (a [`RingBuf`](crate::maps::RingBuf) on a thread of its own, say).
    pub fn take_map(&mut self, name: &str) -> Option<Map> {
        self.maps.remove(name)
    }
    /// Every map, by name.
    pub fn maps(&self) -> impl Iterator<Item = (&str, &Map)> {
        self.maps.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// The loaded program `name` (its function name).
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.get(name)
    }
    /// A program this load left for later (struct_ops, freplace, skipped),
    /// as prepared for the kernel: CO-RE relocated, externs resolved.
    pub fn deferred_program(&self, name: &str) -> Option<&ProgramSpec> {
        self.deferred.get(name)
    }
    /// The memory of arena map `name`, mapped at load (one mapping per
    /// arena and process: the kernel refuses a second one while this lives).
    pub fn arena(&self, name: &str) -> Option<&Arena<Map>> {
        self.arenas.get(name)
    }
    /// Takes program `name` out of the object, to own it.
    pub fn take_program(&mut self, name: &str) -> Option<Program> {
        self.programs.remove(name)
    }
    /// Every loaded program, by name.
    pub fn programs(&self) -> impl Iterator<Item = (&str, &Program)> {
        self.programs.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// The object's BTF as loaded into the kernel, if the kernel took it.
    pub fn btf_fd(&self) -> Option<BorrowedFd<'_>> {
        self.btf.as_ref().map(|b| b.as_fd())
    }
    /// Why the object's programs were loaded without its BTF (no func or
    /// line info), or `None` when they have it (or the object has none).
    pub fn btf_dropped(&self) -> Option<&str> {
        self.btf_dropped.as_deref()
    }
    /// Reads global variable `name` (from `.data`, `.bss`, `.rodata`...) as
    /// the kernel sees it now. `T` must be the variable's size.
    pub fn global<T: crate::Pod>(&self, name: &str) -> Result<T, EbpfError> {
        let (map, offset, size) = self.global_slot::<T>(name)?;
        let value = map
            .lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY)?
            .ok_or_else(|| EbpfError::Global {
                name: name.to_owned(),
                problem: GlobalProblem::NoElement {
                    map: map.name().to_owned(),
                },
            })?;
        let bytes = value
            .get(offset..offset + size)
            .ok_or_else(|| EbpfError::Global {
                name: name.to_owned(),
                problem: GlobalProblem::OutsideMap,
            })?;
        Ok(crate::maps::from_bytes(bytes).expect("size checked"))
    }

    /// Writes global variable `name` in place (read-modify-write of the data
    /// map's single element; frozen `.rodata` refuses).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ebpf = kiln_loader::load_file("target/bpf/globals.bpf.o")?;
    /// // A `.data`/`.bss` variable can change while the programs run.
    /// ebpf.set_global("counter", &5u64)?;
    /// let now: u64 = ebpf.global("counter")?;
    /// assert_eq!(now, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_global<T: crate::Pod>(&self, name: &str, value: &T) -> Result<(), EbpfError> {
        let (map, offset, size) = self.global_slot::<T>(name)?;
        let key = 0u32.to_ne_bytes();
        let mut data = map
            .lookup_bytes(&key, UpdateFlags::ANY)?
            .unwrap_or_else(|| vec![0; map.value_size() as usize]);
        data.get_mut(offset..offset + size)
            .ok_or_else(|| EbpfError::Global {
                name: name.to_owned(),
                problem: GlobalProblem::OutsideMap,
            })?
            .copy_from_slice(crate::maps::bytes_of(value));
        match map.update_bytes(&key, &data, UpdateFlags::ANY) {
            // The loader froze this read-only data map after filling it
            // (`.rodata`, `.kconfig`): EPERM here means frozen, not a
            // missing privilege.
            Err(MapError::Syscall { source, .. })
                if source.errno() == libc::EPERM
                    && map.flags().contains(crate::maps::MapFlags::RDONLY_PROG) =>
            {
                Err(EbpfError::FrozenGlobal {
                    name: name.to_owned(),
                    map: map.name().to_owned(),
                })
            }
            other => Ok(other?),
        }
    }

    fn global_slot<T>(&self, name: &str) -> Result<(&Map, usize, usize), EbpfError> {
        let err = |problem: GlobalProblem| EbpfError::Global {
            name: name.to_owned(),
            problem,
        };
        let (map_name, offset, size) = self
            .globals
            .get(name)
            .ok_or_else(|| err(GlobalProblem::NotInObject))?;
        if *size as usize != std::mem::size_of::<T>() {
            return Err(err(GlobalProblem::RustSize {
                size: *size,
                rust: std::mem::size_of::<T>(),
            }));
        }
        let map = self.maps.get(map_name).ok_or_else(|| {
            err(GlobalProblem::MapTaken {
                map: map_name.clone(),
            })
        })?;
        Ok((map, *offset as usize, *size as usize))
    }

    /// Names of maps that were reused from an existing pin.
    pub fn reused_maps(&self) -> &[String] {
        &self.reused
    }
}

/// Refuses an object of the other byte order before anything reaches the
/// kernel, which would otherwise reject its BTF or misread its instructions.
fn check_byte_order(spec: &ObjectSpec) -> Result<(), EbpfError> {
    let kernel = kiln_obj::ByteOrder::native();
    if spec.byte_order == kernel {
        return Ok(());
    }
    Err(EbpfError::ByteOrder {
        object: spec.byte_order,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::ring_size;

    #[test]
    fn ring_sizes_round_up_to_power_of_two_pages() {
        assert_eq!(ring_size(4096, 4096), 4096);
        assert_eq!(ring_size(3 * 4096, 4096), 4 * 4096);
        assert_eq!(ring_size(3 * 4096 + 1, 4096), 4 * 4096);
        assert_eq!(ring_size(100, 4096), 4096);
        assert_eq!(ring_size(0, 4096), 0);
        assert_eq!(ring_size(u32::MAX, 4096), u32::MAX);
    }
}
