// Test fixture for kiln-manifest: maps and globals with C types, so the
// manifest's values are checked and encoded through BTF (structs, enums,
// bitfields, char arrays, booleans, LPM keys). manifest_typed_v2.bpf.c
// changes the map value's layout, for BTF-driven migration.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED = 0, GREEN = 5, BLUE = 6 };

struct flow {
	__u32 saddr;
	__u16 port;
	__u8 proto;
	__u8 urgent : 3;
	__u8 rest : 5;
	char tag[6];
	enum color color;
};

#ifdef MANIFEST_TYPED_V2
/* Version 2 reorders the value and grows it: a migration copies by name. */
struct stats {
	_Bool on;
	__u32 drops;
	__u64 packets;
	__u64 bytes;
};
#else
struct stats {
	__u64 packets;
	_Bool on;
};
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow);
	__type(value, struct stats);
	__uint(max_entries, 8);
} FLOWS SEC(".maps");

struct prefix_v4 {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct prefix_v4);
	__type(value, __u32);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} BLOCKED SEC(".maps");

struct config {
	__u32 limit;
	enum color color;
	char name[8];
};

volatile const struct config cfg = { .limit = 1, .color = RED, .name = "none" };
volatile const _Bool enabled = 0;

SEC("socket")
int typed(struct __sk_buff *skb)
{
	struct flow f = { .saddr = skb->len, .color = cfg.color };
	struct prefix_v4 k = { .prefixlen = 32, .addr = skb->len };
	if (!enabled || skb->len > cfg.limit)
		return 0;
	if (bpf_map_lookup_elem(&FLOWS, &f) || bpf_map_lookup_elem(&BLOCKED, &k))
		return 1;
	return cfg.name[0];
}

char LICENSE[] SEC("license") = "GPL";
