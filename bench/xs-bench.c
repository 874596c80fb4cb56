/* XenStore over a Unix socket, xenstored's wire format (16-byte header:
 * type, req_id, tx_id, len; then the payload), for bench/xenstore.ts.
 *
 *   xs-bench serve PATH      the floor: a server that reads each request and
 *                            answers it at once with a fixed reply
 *   xs-bench drive PATH N    one client running N rounds of a mix, one
 *                            request in flight at a time; prints
 *                            "xs-bench: ops=<n> ns=<elapsed>"
 *
 * A round is: TRANSACTION_START, READ and WRITE in the transaction,
 * TRANSACTION_END; then WRITE, READ, DIRECTORY outside one: 7 operations.
 * Against the floor every reply is the fixed one; against a real store the
 * transaction may end in EAGAIN, which counts like any reply. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

static void die(const char *what)
{
	fprintf(stderr, "xs-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int full(int fd, void *buf, size_t n, int reading)
{
	for (size_t done = 0; done < n;) {
		ssize_t r = reading ? read(fd, (char *)buf + done, n - done) : write(fd, (char *)buf + done, n - done);
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static struct sockaddr_un address(const char *path)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof a.sun_path) {
		fprintf(stderr, "xs-bench: socket path too long\n");
		exit(1);
	}
	strcpy(a.sun_path, path);
	return a;
}

static _Noreturn void serve(const char *path)
{
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = address(path);
	unlink(path);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4))
		die("listen");
	printf("xs-bench: listening\n");
	fflush(stdout);
	static const char reply[] = "OK";
	for (;;) {
		int c = accept(ls, NULL, NULL);
		if (c < 0)
			die("accept");
		/* One read usually brings a whole request: the floor makes the fewest system calls it can. */
		static char in[2 * (sizeof(struct xsd_sockmsg) + XENSTORE_PAYLOAD_MAX)];
		size_t have = 0;
		for (;;) {
			ssize_t n = read(c, in + have, sizeof in - have);
			if (n <= 0)
				break;
			have += (size_t)n;
			size_t at = 0;
			struct xsd_sockmsg h;
			while (have - at >= sizeof h) {
				memcpy(&h, in + at, sizeof h);
				if (h.len > XENSTORE_PAYLOAD_MAX)
					goto done;
				if (have - at < sizeof h + h.len)
					break;
				char out[sizeof h + sizeof reply];
				struct xsd_sockmsg rh = { h.type, h.req_id, h.tx_id, sizeof reply };
				memcpy(out, &rh, sizeof rh);
				memcpy(out + sizeof rh, reply, sizeof reply);
				if (full(c, out, sizeof out, 0))
					goto done;
				at += sizeof h + h.len;
			}
			memmove(in, in + at, have - at);
			have -= at;
		}
	done:
		close(c);
	}
}

static int fd;
static uint32_t req_id;

/* Sends one request and waits for its reply; the reply's payload is left in buf. */
static void call(uint32_t type, uint32_t tx, const char *a, const char *b, char *buf)
{
	char msg[sizeof(struct xsd_sockmsg) + 256];
	size_t la = strlen(a) + 1, lb = b ? strlen(b) : 0;
	struct xsd_sockmsg h = { type, ++req_id, tx, (uint32_t)(la + lb) };
	memcpy(msg, &h, sizeof h);
	memcpy(msg + sizeof h, a, la);
	if (b)
		memcpy(msg + sizeof h + la, b, lb);
	if (full(fd, msg, sizeof h + la + lb, 0))
		die("write");
	struct xsd_sockmsg r;
	do {
		if (full(fd, &r, sizeof r, 1) || r.len > XENSTORE_PAYLOAD_MAX || full(fd, buf, r.len, 1))
			die("read");
	} while (r.type == XS_WATCH_EVENT);
	buf[r.len] = 0;
}

static int drive(const char *path, long rounds)
{
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = address(path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a))
		die("connect");
	char buf[XENSTORE_PAYLOAD_MAX + 1];
	call(XS_WRITE, 0, "/bench/dir/a", "1", buf);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < rounds; i++) {
		call(XS_TRANSACTION_START, 0, "", NULL, buf);
		uint32_t tx = (uint32_t)strtoul(buf, NULL, 10);
		call(XS_READ, tx, "/bench/dir/a", NULL, buf);
		call(XS_WRITE, tx, "/bench/dir/b", "value", buf);
		call(XS_TRANSACTION_END, tx, "T", NULL, buf);
		call(XS_WRITE, 0, "/bench/dir/c", "another value", buf);
		call(XS_READ, 0, "/bench/dir/c", NULL, buf);
		call(XS_DIRECTORY, 0, "/bench/dir", NULL, buf);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
	printf("xs-bench: ops=%ld ns=%lld\n", rounds * 7, ns);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		serve(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "drive"))
		return drive(argv[2], atol(argv[3]));
	fprintf(stderr, "usage: xs-bench serve PATH | xs-bench drive PATH ROUNDS\n");
	return 2;
}
