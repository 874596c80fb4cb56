// The network benchmark's sender (bench/net.ts), a static Linux program with no
// libc, run as the Linux guest's /bin/net-send and, for the floor, by the host in a
// network namespace, so both ends of the comparison send with the same code:
//
//   net-send tcp ADDRESS PORT MIB          MIB MiB over one TCP connection, in 64 KiB writes
//   net-send udp ADDRESS PORT COUNT SIZE   COUNT datagrams of SIZE bytes, as fast as they go
//
// The receiver (bench/net-sink.c) times what arrives. The connection is tried for 60 s
// (the host's side may come up after the guest's) and ends when the receiver closes it; a
// datagram the stack drops is not sent again.
#include <stddef.h>
#include <stdint.h>

enum { SYS_read = 0, SYS_write = 1, SYS_close = 3, SYS_shutdown = 48, SYS_socket = 41, SYS_connect = 42, SYS_nanosleep = 35, SYS_exit_group = 231 };
enum { AF_INET = 2, SOCK_STREAM = 1, SOCK_DGRAM = 2, SHUT_WR = 1 };

struct sockaddr_in {
  uint16_t family;
  uint16_t port; /* network order */
  uint32_t addr; /* network order */
  uint8_t zero[8];
};

static long syscall3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static size_t length(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

static int same(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

static void say(const char *s) { syscall3(SYS_write, 2, (long)s, (long)length(s)); }

static __attribute__((noreturn)) void quit(int status) {
  for (;;) syscall3(SYS_exit_group, status, 0, 0);
}

static __attribute__((noreturn)) void fail(const char *why) {
  say("net-send: ");
  say(why);
  say("\n");
  quit(1);
}

/** A decimal number, or -1 for anything else. */
static long number(const char *s) {
  long n = 0;
  if (!*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || n > 1000000000) return -1;
    n = n * 10 + (*s - '0');
  }
  return n;
}

/** A dotted IPv4 address in network order; exits on anything else. */
static uint32_t ipv4(const char *s) {
  uint32_t addr = 0;
  for (int part = 0; part < 4; part++) {
    long n = 0;
    const char *start = s;
    while (*s >= '0' && *s <= '9') n = n * 10 + (*s++ - '0');
    if (s == start || n > 255 || (part < 3 ? *s != '.' : *s != 0)) fail("not an IPv4 address");
    addr |= (uint32_t)n << (8 * part);
    if (part < 3) s++;
  }
  return addr;
}

static uint8_t payload[65536];

static int connected(int type, const struct sockaddr_in *to) {
  const struct { long sec, nsec; } pause = { 0, 100000000 };
  for (int tries = 0; tries < 600; tries++) {
    long fd = syscall3(SYS_socket, AF_INET, type, 0);
    if (fd < 0) fail("socket failed");
    if (syscall3(SYS_connect, fd, (long)to, sizeof *to) == 0) return (int)fd;
    syscall3(SYS_close, fd, 0, 0);
    syscall3(SYS_nanosleep, (long)&pause, 0, 0);
  }
  fail("could not connect in 60 s");
}

__attribute__((used)) static void main_c(long *stack) {
  long argc = stack[0];
  char **argv = (char **)&stack[1];
  for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7 + 1);
  if (argc < 5) fail("usage: net-send tcp ADDRESS PORT MIB | net-send udp ADDRESS PORT COUNT SIZE");
  long port = number(argv[3]);
  if (port < 1 || port > 65535) fail("not a port");
  struct sockaddr_in to = { AF_INET, (uint16_t)(((port & 0xff) << 8) | (port >> 8)), ipv4(argv[2]), { 0 } };
  long count = number(argv[4]);
  if (count < 0) fail("not a count");
  if (same(argv[1], "tcp")) {
    int fd = connected(SOCK_STREAM, &to);
    for (long left = count << 20; left > 0;) {
      long n = syscall3(SYS_write, fd, (long)payload, left < (long)sizeof payload ? left : (long)sizeof payload);
      if (n <= 0) fail("the connection failed");
      left -= n;
    }
    // Done once the receiver has read it all and closed: a close() alone returns with data still
    // queued, which a guest that powers off next would lose.
    if (syscall3(SYS_shutdown, fd, SHUT_WR, 0)) fail("shutdown failed");
    while (syscall3(SYS_read, fd, (long)payload, sizeof payload) > 0) continue;
    syscall3(SYS_close, fd, 0, 0);
  } else if (same(argv[1], "udp") && argc == 6) {
    long size = number(argv[5]);
    if (size < 1 || size > 1472) fail("a datagram is 1 to 1472 bytes here");
    int fd = connected(SOCK_DGRAM, &to);
    // A full queue drops the datagram (the send still succeeds); the receiver counts what arrived.
    for (long i = 0; i < count; i++) syscall3(SYS_write, fd, (long)payload, size);
    syscall3(SYS_close, fd, 0, 0);
  } else {
    fail("usage: net-send tcp ADDRESS PORT MIB | net-send udp ADDRESS PORT COUNT SIZE");
  }
  quit(0);
}

__attribute__((naked, noreturn)) void _start(void) {
  __asm__("mov %rsp, %rdi\n\tand $-16, %rsp\n\tcall main_c\n\tud2");
}
