// SPDX-License-Identifier: MIT OR Apache-2.0
//
// libbpf's side of `cargo xtask bench`: the same workloads as
// bench/kiln-bench, written the way a libbpf user would, against the system
// libbpf. Usage: libbpf-bench WORKLOAD ITERS [OBJECT_DIR]; prints
// "MEDIAN_NS COUNT" like kiln-bench. Setup is outside the timed region.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#define VMLINUX "/sys/kernel/btf/vmlinux"
#define W4_N 100000u
#define W5_N 1000000u
#define W6_N 1000000ull
#define W6_PER_RUN 16384ull
#define W5_CHUNK 4096u

struct span {
	uint64_t cpu, wall;
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static struct span now_ns(void)
{
	return (struct span){ clock_ns(CLOCK_THREAD_CPUTIME_ID), clock_ns(CLOCK_MONOTONIC) };
}

static struct span since(struct span t)
{
	struct span n = now_ns();
	return (struct span){ n.cpu - t.cpu, n.wall - t.wall };
}

static void die(const char *what, int err)
{
	fprintf(stderr, "libbpf-bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct bpf_object *load(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		die(path, errno);
	int err = bpf_object__load(obj);
	if (err)
		die(path, err);
	return obj;
}

static int map_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
	if (!m)
		die(name, ENOENT);
	return bpf_map__fd(m);
}

static int on_record(void *ctx, void *data, size_t len)
{
	uint64_t *sum = ctx;
	*sum += ((unsigned char *)data)[0];
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: libbpf-bench WORKLOAD ITERS [OBJECT_DIR]\n");
		return 2;
	}
	const char *w = argv[1];
	int iters = atoi(argv[2]);
	const char *dir = argc > 3 ? argv[3] : "target/bpf";
	if (iters <= 0)
		die("ITERS must be > 0", EINVAL);
	struct span *times = calloc(iters, sizeof(*times));
	uint64_t *cpu = calloc(iters, sizeof(*cpu)), *wall = calloc(iters, sizeof(*wall));
	uint64_t count = 0;
	char path[4096];
	libbpf_set_print(NULL);

	if (!strcmp(w, "w1") || !strcmp(w, "w1read")) {
		for (int i = 0; i < iters; i++) {
			struct span t = now_ns();
			struct btf *btf = btf__parse(VMLINUX, NULL);
			if (!btf)
				die(VMLINUX, errno);
			int id = btf__find_by_name_kind(btf, "task_struct", BTF_KIND_STRUCT);
			times[i] = since(t);
			if (id <= 0)
				die("task_struct", ENOENT);
			count = btf__type_cnt(btf); // with type 0 (void), as Kiln counts
			btf__free(btf);
		}
	} else if (!strcmp(w, "w2") || !strcmp(w, "w3")) {
		snprintf(path, sizeof(path), "%s/w2.bpf.o", dir);
		for (int i = 0; i < iters; i++) {
			struct span t = now_ns();
			struct bpf_object *obj = bpf_object__open_file(path, NULL);
			if (!obj)
				die(path, errno);
			if (w[1] == '3') {
				int err = bpf_object__load(obj);
				if (err)
					die(path, err);
			}
			times[i] = since(t);
			struct bpf_program *p;
			count = 0;
			bpf_object__for_each_program(p, obj)
				count++;
			bpf_object__close(obj);
		}
	} else if (!strcmp(w, "w4")) {
		struct bpf_object *obj = load(dir, "w456.bpf.o");
		int fd = map_fd(obj, "w4_map");
		for (int i = 0; i < iters; i++) {
			struct span t = now_ns();
			uint64_t sum = 0;
			for (uint32_t k = 0; k < W4_N; k++) {
				uint64_t v = (uint64_t)k * 3;
				int err = bpf_map_update_elem(fd, &k, &v, BPF_ANY);
				if (err)
					die("update", err);
			}
			for (uint32_t k = 0; k < W4_N; k++) {
				uint64_t v;
				int err = bpf_map_lookup_elem(fd, &k, &v);
				if (err)
					die("lookup", err);
				sum += v;
			}
			times[i] = since(t);
			if (sum != 3ull * W4_N * (W4_N - 1) / 2)
				die("w4: lookups returned wrong values", EINVAL);
			count = W4_N;
		}
		bpf_object__close(obj);
	} else if (!strcmp(w, "w5batch") || !strcmp(w, "w5key")) {
		struct bpf_object *obj = load(dir, "w456.bpf.o");
		int fd = map_fd(obj, "w5_map");
		uint32_t *keys = calloc(W5_N, sizeof(*keys));
		uint64_t *vals = calloc(W5_N, sizeof(*vals));
		for (uint32_t k = 0; k < W5_N; k++)
			keys[k] = k, vals[k] = k;
		uint32_t n = W5_N;
		int err = bpf_map_update_batch(fd, keys, vals, &n, NULL);
		if (err)
			die("update batch", err);
		for (int i = 0; i < iters; i++) {
			struct span t = now_ns();
			uint64_t got = 0;
			if (w[2] == 'b') {
				// The whole map into preallocated arrays, 4096 per call.
				uint32_t in = 0, out = 0;
				void *inp = NULL;
				for (;;) {
					uint32_t c = W5_N - got < W5_CHUNK ? W5_N - got : W5_CHUNK;
					if (c == 0)
						c = 1;
					err = bpf_map_lookup_batch(fd, inp, &out, keys + got, vals + got, &c, NULL);
					got += c;
					if (err == -ENOENT)
						break;
					if (err)
						die("lookup batch", err);
					in = out;
					inp = &in;
				}
			} else {
				uint32_t key, next;
				uint64_t v;
				void *kp = NULL;
				while (!bpf_map_get_next_key(fd, kp, &next)) {
					if (!bpf_map_lookup_elem(fd, &next, &v))
						got++;
					key = next;
					kp = &key;
				}
			}
			times[i] = since(t);
			count = got;
		}
		bpf_object__close(obj);
	} else if (!strcmp(w, "w6")) {
		struct bpf_object *obj = load(dir, "w456.bpf.o");
		struct bpf_program *prog = bpf_object__find_program_by_name(obj, "produce");
		if (!prog)
			die("produce", ENOENT);
		uint64_t sum = 0;
		struct ring_buffer *rb = ring_buffer__new(map_fd(obj, "ring"), on_record, &sum, NULL);
		if (!rb)
			die("ring_buffer__new", errno);
		unsigned char packet[64] = { 0 };
		for (int i = 0; i < iters; i++) {
			struct span drained = { 0, 0 };
			uint64_t got = 0;
			while (got < W6_N) {
				LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet,
					    .data_size_in = sizeof(packet));
				int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
				if (err)
					die("test run", err);
				struct span t = now_ns();
				int n = ring_buffer__consume(rb);
				struct span d = since(t);
				drained.cpu += d.cpu;
				drained.wall += d.wall;
				if (n < 0)
					die("consume", n);
				got += n;
			}
			if (got != (W6_N + W6_PER_RUN - 1) / W6_PER_RUN * W6_PER_RUN)
				die("w6: wrong record count", EINVAL);
			times[i] = drained;
			count = got;
		}
		ring_buffer__free(rb);
		bpf_object__close(obj);
	} else {
		fprintf(stderr, "libbpf-bench: unknown workload %s\n", w);
		return 2;
	}
	for (int i = 0; i < iters; i++)
		cpu[i] = times[i].cpu, wall[i] = times[i].wall;
	qsort(cpu, iters, sizeof(*cpu), cmp_u64);
	qsort(wall, iters, sizeof(*wall), cmp_u64);
	printf("%llu %llu %llu\n", (unsigned long long)cpu[iters / 2],
	       (unsigned long long)wall[iters / 2], (unsigned long long)count);
	return 0;
}
