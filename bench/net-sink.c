/* The receiving end of bench/net.ts, on the host: what the sender
 * (guests/linux/net-send.c, in the Linux guest or in the floor's network
 * namespace) sends to ADDRESS:PORT, timed with CLOCK_MONOTONIC from the first
 * byte to the last.
 *   usage: net-sink tcp|udp ADDRESS PORT
 *   prints "net-sink ready" once it listens, then
 *     tcp: net-sink tcp bytes=<b> ns=<t>                one connection, until the sender closes it
 *     udp: net-sink udp packets=<n> bytes=<b> ns=<t>   until 2 s pass without a datagram */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "net-sink: %s: %s\n", what, strerror(errno));
  exit(1);
}

static char buffer[1 << 18];

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "udp"))) {
    fprintf(stderr, "usage: net-sink tcp|udp ADDRESS PORT\n");
    return 2;
  }
  int tcp = !strcmp(argv[1], "tcp");
  struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
  if (inet_pton(AF_INET, argv[2], &at.sin_addr) != 1) {
    fprintf(stderr, "net-sink: %s is not an IPv4 address\n", argv[2]);
    return 2;
  }
  int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int one = 1, big = 16 << 20;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* A deep receive queue (forced where permitted), so the sink's own pauses drop nothing. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big)) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (bind(fd, (struct sockaddr *)&at, sizeof at)) die("bind");
  if (tcp && listen(fd, 1)) die("listen");
  printf("net-sink ready\n");
  fflush(stdout);
  uint64_t bytes = 0, packets = 0, first = 0, last = 0;
  if (tcp) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) die("accept");
    for (;;) {
      ssize_t n = read(c, buffer, sizeof buffer);
      if (n < 0) die("read");
      if (n == 0) break;
      last = now();
      if (!bytes) first = last;
      bytes += (uint64_t)n;
    }
    printf("net-sink tcp bytes=%llu ns=%llu\n", (unsigned long long)bytes, (unsigned long long)(last - first));
    return 0;
  }
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      die("recv");
    }
    last = now();
    if (!packets) {
      first = last;
      struct timeval idle = { .tv_sec = 2 };
      if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle)) die("SO_RCVTIMEO");
    }
    packets++;
    bytes += (uint64_t)n;
  }
  printf("net-sink udp packets=%llu bytes=%llu ns=%llu\n", (unsigned long long)packets, (unsigned long long)bytes, (unsigned long long)(last - first));
  return 0;
}
