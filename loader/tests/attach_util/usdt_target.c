/* A USDT target for attach_usdt.rs, compiled by the test with `cc`. The
 * probe note is emitted by hand, as <sys/sdt.h> does, so the test needs no
 * systemtap-sdt-dev: a nop at the probe site, a .note.stapsdt entry (pc,
 * .stapsdt.base address, semaphore address, provider, name, argument
 * specs) and the .stapsdt.base anchor used to detect prelink shifts.
 *
 * Usage: usdt_target N [wait] — fires kiln:hit(i, 77) for i in 0..N while
 * the semaphore says a tracer is attached, then prints the semaphore value.
 * With "wait", first reads a line from stdin (so a tracer can attach to
 * this pid). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned short kiln_hit_semaphore __attribute__((section(".probes"), used));

/* Negated by %n: "-4" for a signed 4-byte argument, "4" for unsigned. */
#define KILN_SDT_SIZE(x) \
	((((__typeof__(x))-1) < (__typeof__(x))1 ? 1 : -1) * (int)sizeof(x))

#define KILN_PROBE2(provider, name, a1, a2)                                   \
	__asm__ __volatile__(                                                 \
		"990: nop\n"                                                  \
		".pushsection .note.stapsdt,\"\",\"note\"\n"                  \
		".balign 4\n"                                                 \
		".4byte 992f-991f, 994f-993f, 3\n"                            \
		"991: .asciz \"stapsdt\"\n"                                   \
		"992: .balign 4\n"                                            \
		"993: .8byte 990b\n"                                          \
		".8byte _.stapsdt.base\n"                                     \
		".8byte " #provider "_" #name "_semaphore\n"                  \
		".asciz \"" #provider "\"\n"                                  \
		".asciz \"" #name "\"\n"                                      \
		".asciz \"%n[s1]@%[x1] %n[s2]@%[x2]\"\n"                      \
		"994: .balign 4\n"                                            \
		".popsection\n"                                               \
		".ifndef _.stapsdt.base\n"                                    \
		".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
		".weak _.stapsdt.base\n"                                      \
		".hidden _.stapsdt.base\n"                                    \
		"_.stapsdt.base: .space 1\n"                                  \
		".size _.stapsdt.base, 1\n"                                   \
		".popsection\n"                                               \
		".endif\n"                                                    \
		:                                                             \
		: [s1] "n"(KILN_SDT_SIZE(a1)), [x1] "nor"(a1),                \
		  [s2] "n"(KILN_SDT_SIZE(a2)), [x2] "nor"(a2))

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	char line[16];

	if (argc > 2 && strcmp(argv[2], "wait") == 0 && !fgets(line, sizeof(line), stdin))
		return 2;

	for (int i = 0; i < n; i++) {
		if (kiln_hit_semaphore)
			KILN_PROBE2(kiln, hit, i, 77L);
	}
	printf("%u\n", (unsigned)kiln_hit_semaphore);
	return 0;
}
