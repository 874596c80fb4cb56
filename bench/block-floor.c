/* The host floor of bench/block.ts: what guests/tests/bench-block.c asks of
 * xvda, done by a host process to the same image file: 4 KiB reads at the
 * guest's LCG offsets, then 1 MiB writes and 1 MiB reads from offset 0 on,
 * wrapping at the end of the file. -t threads (4 by default: libuv's pool,
 * whose threads do the backend's reads and writes, so that as many requests
 * move bytes at once on either side) each take the next request as they
 * finish one, with pread/pwrite into a buffer of their own; each phase is
 * timed with CLOCK_MONOTONIC from the threads' start to the last one's end.
 *   usage: block-floor [-r rand-ops] [-s seq-ops] [-t threads] image
 *   prints: block-floor rand4k-ops=<n> rand4k-ns=<t> seqw-bytes=<b> seqw-ns=<t> seqr-bytes=<b> seqr-ns=<t> */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define SEQ_SIZE (1u << 20)

enum phase { RAND_READ, SEQ_WRITE, SEQ_READ };

static int fd;
static uint64_t *rand_offsets;
static uint64_t seq_span; /* the file's size rounded down to whole MiB */
static enum phase phase;
static uint64_t ops;
static uint64_t next_op;

static void fail(const char *what)
{
	fprintf(stderr, "block-floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *worker(void *buffer)
{
	for (;;) {
		uint64_t i = __atomic_fetch_add(&next_op, 1, __ATOMIC_RELAXED);
		if (i >= ops)
			return NULL;
		size_t size = phase == RAND_READ ? PAGE : SEQ_SIZE;
		off_t at = (off_t)(phase == RAND_READ ? rand_offsets[i] : i * SEQ_SIZE % seq_span);
		ssize_t n = phase == SEQ_WRITE ? pwrite(fd, buffer, size, at) : pread(fd, buffer, size, at);
		if (n != (ssize_t)size) {
			if (n >= 0)
				errno = EIO; /* short: the file shrank */
			fail(phase == SEQ_WRITE ? "pwrite" : "pread");
		}
	}
}

/* `count` requests of the phase over `threads` threads: nanoseconds. */
static uint64_t run(enum phase ph, uint64_t count, int threads, void **buffers)
{
	pthread_t tid[threads];
	struct timespec t0, t1;
	phase = ph;
	ops = count;
	next_op = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int t = 0; t < threads; t++)
		if ((errno = pthread_create(&tid[t], NULL, worker, buffers[t])) != 0)
			fail("pthread_create");
	for (int t = 0; t < threads; t++)
		pthread_join(tid[t], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
}

int main(int argc, char **argv)
{
	uint64_t rand_ops = 10000, seq_ops = 256;
	int threads = 4, opt;
	while ((opt = getopt(argc, argv, "r:s:t:")) != -1) {
		if (opt == 'r')
			rand_ops = strtoull(optarg, NULL, 0);
		else if (opt == 's')
			seq_ops = strtoull(optarg, NULL, 0);
		else if (opt == 't')
			threads = atoi(optarg);
		else
			break;
	}
	if (optind != argc - 1 || threads < 1 || threads > 256) {
		fprintf(stderr, "usage: block-floor [-r rand-ops] [-s seq-ops] [-t threads 1-256] image\n");
		return 2;
	}
	fd = open(argv[optind], O_RDWR);
	if (fd < 0)
		fail(argv[optind]);
	struct stat st;
	if (fstat(fd, &st) != 0)
		fail("fstat");
	seq_span = (uint64_t)st.st_size / SEQ_SIZE * SEQ_SIZE;
	if (seq_span == 0) {
		fprintf(stderr, "block-floor: %s is smaller than 1 MiB\n", argv[optind]);
		return 1;
	}
	/* The guest's generator (bench-block.c), over the disk's whole 4 KiB pages. */
	uint64_t pages = (uint64_t)st.st_size / 512 / 8, lcg = 1;
	rand_offsets = malloc(rand_ops * sizeof *rand_offsets);
	if (!rand_offsets)
		fail("malloc");
	for (uint64_t i = 0; i < rand_ops; i++) {
		lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
		rand_offsets[i] = (lcg >> 16) % pages * PAGE;
	}
	void *buffers[threads];
	for (int t = 0; t < threads; t++) {
		if ((errno = posix_memalign(&buffers[t], PAGE, SEQ_SIZE)) != 0)
			fail("posix_memalign");
		memset(buffers[t], 0x5a, SEQ_SIZE);
	}
	uint64_t rand_ns = run(RAND_READ, rand_ops, threads, buffers);
	uint64_t seqw_ns = run(SEQ_WRITE, seq_ops, threads, buffers);
	uint64_t seqr_ns = run(SEQ_READ, seq_ops, threads, buffers);
	unsigned long long seq_bytes = (unsigned long long)seq_ops * SEQ_SIZE;
	printf("block-floor rand4k-ops=%llu rand4k-ns=%llu seqw-bytes=%llu seqw-ns=%llu seqr-bytes=%llu seqr-ns=%llu\n", (unsigned long long)rand_ops,
	       (unsigned long long)rand_ns, seq_bytes, (unsigned long long)seqw_ns, seq_bytes, (unsigned long long)seqr_ns);
	return 0;
}
