// Test fixture for kiln-manifest: version 2 of manifest_counter.bpf.c, the
// "upgraded" build (packets are also counted under key 2), so a test can tell
// which generation runs.
#define MANIFEST_COUNTER_V2 1
#include "manifest_counter.bpf.c"
