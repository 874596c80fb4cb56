/* The floor's link in bench/net.ts: two TAP devices, TAP-A and TAP-B, joined
 * by this process, which copies each frame read from one to the other, with
 * its virtio-net header (IFF_VNET_HDR, checksum and TSO offloads on, as xenkvm
 * sets them for a frontend that takes them). Host-to-host traffic over the
 * pair crosses two TAP devices and a user-space copy, the host-side path of a
 * guest's packets over xenkvm's TAP device without the guest and its rings.
 *   usage: net-relay TAP-A TAP-B
 *   prints "net-relay ready" once both devices exist; copies until killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int open_tap(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "net-relay: /dev/net/tun: %s\n", strerror(errno));
    exit(1);
  }
  struct ifreq req = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
  snprintf(req.ifr_name, sizeof req.ifr_name, "%s", name);
  if (ioctl(fd, TUNSETIFF, &req) || ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) {
    fprintf(stderr, "net-relay: cannot create TAP device %s: %s\n", name, strerror(errno));
    exit(1);
  }
  return fd;
}

struct direction {
  int from, to;
};

static void *copy(void *arg) {
  const struct direction *d = arg;
  static __thread char frame[65536 + 64];
  for (;;) {
    ssize_t n = read(d->from, frame, sizeof frame);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      fprintf(stderr, "net-relay: read: %s\n", n ? strerror(errno) : "end of file");
      exit(1);
    }
    /* A frame the other device refuses (its link is down) is dropped, as a switch would. */
    if (write(d->to, frame, (size_t)n) < 0 && errno != EIO) {
      fprintf(stderr, "net-relay: write: %s\n", strerror(errno));
      exit(1);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: net-relay TAP-A TAP-B\n");
    return 2;
  }
  int a = open_tap(argv[1]), b = open_tap(argv[2]);
  static struct direction ab, ba;
  ab = (struct direction){ a, b };
  ba = (struct direction){ b, a };
  pthread_t t;
  if (pthread_create(&t, NULL, copy, &ab) || pthread_create(&t, NULL, copy, &ba)) {
    fprintf(stderr, "net-relay: cannot start its threads\n");
    return 1;
  }
  printf("net-relay ready\n");
  fflush(stdout);
  pause();
  return 0;
}
