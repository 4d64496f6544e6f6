/* libbpf side of the vmlinux BTF benchmark (obj/benches/btf_vs_libbpf.rs
 * compiles this with `cc ... -lbpf` at bench time). Mirrors the Rust side:
 * parse an in-memory blob, the first lookup by name and kind, nine more;
 * each figure is the minimum over ROUNDS rounds. Also times btf__parse(PATH),
 * which reads the file itself. Prints one line of `key=value` pairs. */
#include <bpf/btf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *names[] = { "task_struct", "sk_buff", "file",   "inode",      "bpf_prog",
			       "pt_regs",     "net_device", "sock", "cgroup", "mm_struct" };

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/sys/kernel/btf/vmlinux";
	int rounds = argc > 2 ? atoi(argv[2]) : 50;
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);

	double best_file = 1e9, best_parse = 1e9, best_first = 1e9, best_more = 1e9;
	int types = 0;
	for (int r = 0; r < rounds; r++) {
		double t0 = now_ms();
		struct btf *fb = btf__parse(path, NULL);
		double t1 = now_ms();
		if (!fb) {
			fprintf(stderr, "btf__parse %s failed\n", path);
			return 1;
		}
		btf__free(fb);

		double t2 = now_ms();
		struct btf *btf = btf__new(buf, len);
		double t3 = now_ms();
		if (!btf) {
			fprintf(stderr, "btf__new failed\n");
			return 1;
		}
		int first = btf__find_by_name_kind(btf, names[0], BTF_KIND_STRUCT);
		double t4 = now_ms();
		int found = first > 0;
		for (int i = 1; i < 10; i++)
			found += btf__find_by_name_kind(btf, names[i], BTF_KIND_STRUCT) > 0;
		double t5 = now_ms();
		if (found != 10) {
			fprintf(stderr, "only %d of 10 structs found\n", found);
			return 1;
		}
		types = btf__type_cnt(btf);
		btf__free(btf);
		if (t1 - t0 < best_file)
			best_file = t1 - t0;
		if (t3 - t2 < best_parse)
			best_parse = t3 - t2;
		if (t4 - t3 < best_first)
			best_first = t4 - t3;
		if (t5 - t4 < best_more)
			best_more = t5 - t4;
	}
	printf("types=%d parse_file=%.3f parse=%.3f first=%.3f more=%.3f\n", types, best_file, best_parse,
	       best_first, best_more);
	return 0;
}
