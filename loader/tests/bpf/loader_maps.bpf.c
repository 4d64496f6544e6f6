// Every map family the loader's typed views cover, plus programs that fill
// them when run with BPF_PROG_TEST_RUN (see loader/tests/maps.rs).
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct lpm_v4 {
	__u32 prefix_len;
	__u8 addr[4];
};

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, __u32); __type(value, __u64); } hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } lru SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 16); __type(key, __u32); __type(value, __u64); } pc_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8); __uint(map_flags, BPF_F_MMAPABLE); __type(key, __u32); __type(value, __u64); } counters SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 2); __type(key, __u32); __type(value, __u64); } pc_array SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 64); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, struct lpm_v4); __type(value, __u32); } routes SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_QUEUE); __uint(max_entries, 8); __type(value, __u32); } queue SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK); __uint(max_entries, 8); __type(value, __u32); } stack SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u32); } jumps SEC(".maps");
struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u32); };
struct { __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); __uint(max_entries, 2); __type(key, __u32); __array(values, struct inner); } outer SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __uint(max_entries, 2); __type(key, __u32); __array(values, struct inner); } outer_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SOCKMAP); __uint(max_entries, 2); __type(key, __u32); __type(value, __u32); } socks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SOCKHASH); __uint(max_entries, 2); __type(key, __u32); __type(value, __u32); } sock_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_DEVMAP); __uint(max_entries, 2); __type(key, __u32); __type(value, struct bpf_devmap_val); } devs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_CPUMAP); __uint(max_entries, 2); __type(key, __u32); __type(value, struct bpf_cpumap_val); } cpus SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_XSKMAP); __uint(max_entries, 2); __type(key, __u32); __type(value, __u32); } xsks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 16); __uint(key_size, 4); __uint(value_size, 8 * 127); } stacks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, int); __type(value, __u64); } sk_store SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } perf SEC(".maps");

const volatile __u64 increment = 1;
__u64 runs = 0;
__u32 seen_len;

struct record {
	__u32 seq;
	__u32 len;
};

SEC("socket")
int count(struct __sk_buff *skb)
{
	__u32 key = 0, q;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);
	if (v)
		__atomic_fetch_add(v, increment, __ATOMIC_RELAXED);
	__u64 one = 1, *h = bpf_map_lookup_elem(&hash, &key);
	if (h)
		__atomic_fetch_add(h, 1, __ATOMIC_RELAXED);
	else
		bpf_map_update_elem(&hash, &key, &one, BPF_ANY);
	__u64 *pc = bpf_map_lookup_elem(&pc_array, &key);
	if (pc)
		*pc += 1;
	runs += 1;
	seen_len = skb->len;
	q = (__u32)runs;
	bpf_map_push_elem(&queue, &q, BPF_EXIST);
	struct record r = { .seq = (__u32)runs, .len = skb->len };
	bpf_ringbuf_output(&events, &r, sizeof(r), 0);
	return 0;
}

SEC("tc")
int perf_out(struct __sk_buff *skb)
{
	struct record r = { .seq = 7, .len = skb->len };
	bpf_perf_event_output(skb, &perf, BPF_F_CURRENT_CPU, &r, sizeof(r));
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
