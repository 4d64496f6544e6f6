// Test fixture for kiln-manifest: manifest_typed.bpf.c with a reordered,
// larger FLOWS value (see struct stats there).
#define MANIFEST_TYPED_V2 1
#include "manifest_typed.bpf.c"
