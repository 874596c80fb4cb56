// User-mode networking for a PV network interface: libslirp (Debian's
// libslirp0, the library QEMU's -netdev user uses), loaded with koffi and run
// on this thread of its own. It is the guest's router, DHCP and DNS server on
// a private network (QEMU's: 10.0.2.0/24, the host 10.0.2.2, the guest
// 10.0.2.15), its connections made from this process's own sockets, so that
// anyone may use it; port forwards (hostfwd) listen on the host. The thread
// sleeps in poll() on slirp's sockets and an eventfd the device's thread writes
// when it has packets for slirp; the frames slirp sends the guest go into the
// queue's packet ring, and the device's thread is woken through its channel.
import koffi from 'koffi';
import { parentPort, workerData } from 'node:worker_threads';
import { configureLogging, log, RateLimitedLog, type LogLevel } from '../../common/log.js';
import { check, EINTR, errno, libc, POLL, PollFds } from '../../kvm/libc.js';
import { EventNotifier, type EventNotifierHandle } from '../../xen/evtchn/backend.js';
import { PacketRing } from './packet-ring.js';
import type { PortForward } from './vif-spec.js';

export interface SlirpThreadInit {
  /** Frames from the guest (the device's thread puts them), and frames for the guest. */
  toSlirp: SharedArrayBuffer;
  fromSlirp: SharedArrayBuffer;
  /** What the device's thread waits on. */
  wake: EventNotifierHandle;
  /** An eventfd: the device's thread writes it after putting frames; a write with `stop` set ends the thread. */
  eventFd: number;
  stop: SharedArrayBuffer;
  mtu: number;
  forwards: PortForward[];
  logLevel: LogLevel;
}

/** The guest's network, as QEMU's user networking sets it up. */
export const USER_NET = { network: '10.0.2.0', netmask: '255.255.255.0', host: '10.0.2.2', dhcpStart: '10.0.2.15', nameserver: '10.0.2.3' } as const;

const SLIRP_POLL = { IN: 1, OUT: 2, PRI: 4, ERR: 8, HUP: 16 } as const;
const SLIRP_CONFIG_VERSION = 4;

/** An IPv4 address as libslirp's struct in_addr holds it: network byte order in a 32-bit word. */
function inAddr(dotted: string): number {
  const b = dotted.split('.').map(Number);
  return new DataView(new Uint8Array(b).buffer).getUint32(0, true);
}

function bind() {
  const lib = koffi.load('libslirp.so.0');
  const in6 = koffi.array('uint8_t', 16);
  const config = koffi.struct('SlirpConfig', {
    version: 'uint32_t', restricted: 'int', in_enabled: 'bool', vnetwork: 'uint32_t', vnetmask: 'uint32_t', vhost: 'uint32_t',
    in6_enabled: 'bool', vprefix_addr6: in6, vprefix_len: 'uint8_t', vhost6: in6, vhostname: 'const char *', tftp_server_name: 'const char *',
    tftp_path: 'const char *', bootfile: 'const char *', vdhcp_start: 'uint32_t', vnameserver: 'uint32_t', vnameserver6: in6,
    vdnssearch: 'void *', vdomainname: 'const char *', if_mtu: 'size_t', if_mru: 'size_t', disable_host_loopback: 'bool', enable_emu: 'bool',
    outbound_addr: 'void *', outbound_addr6: 'void *', disable_dns: 'bool', disable_dhcp: 'bool',
  });
  const protos = {
    write: koffi.proto('intptr_t SlirpWriteCb(const void *buf, size_t len, void *opaque)'),
    guestError: koffi.proto('void SlirpGuestErrorCb(const char *msg, void *opaque)'),
    clock: koffi.proto('int64_t SlirpClockCb(void *opaque)'),
    timerNew: koffi.proto('void *SlirpTimerNewCb(void *cb, void *cb_opaque, void *opaque)'),
    timerFree: koffi.proto('void SlirpTimerFreeCb(void *timer, void *opaque)'),
    timerMod: koffi.proto('void SlirpTimerModCb(void *timer, int64_t expire, void *opaque)'),
    fd: koffi.proto('void SlirpFdCb(int fd, void *opaque)'),
    notify: koffi.proto('void SlirpNotifyCb(void *opaque)'),
    initCompleted: koffi.proto('void SlirpInitCompletedCb(void *slirp, void *opaque)'),
    timerNewOpaque: koffi.proto('void *SlirpTimerNewOpaqueCb(int id, void *cb_opaque, void *opaque)'),
    addPoll: koffi.proto('int SlirpAddPollCb(int fd, int events, void *opaque)'),
    getRevents: koffi.proto('int SlirpGetREventsCb(int idx, void *opaque)'),
  };
  const callbacks = koffi.struct('SlirpCb', {
    send_packet: koffi.pointer(protos.write), guest_error: koffi.pointer(protos.guestError), clock_get_ns: koffi.pointer(protos.clock),
    timer_new: koffi.pointer(protos.timerNew), timer_free: koffi.pointer(protos.timerFree), timer_mod: koffi.pointer(protos.timerMod),
    register_poll_fd: koffi.pointer(protos.fd), unregister_poll_fd: koffi.pointer(protos.fd), notify: koffi.pointer(protos.notify),
    init_completed: koffi.pointer(protos.initCompleted), timer_new_opaque: koffi.pointer(protos.timerNewOpaque),
  });
  return {
    protos,
    config,
    callbacks,
    slirpNew: lib.func('void *slirp_new(const SlirpConfig *cfg, const SlirpCb *callbacks, void *opaque)'),
    pollfdsFill: lib.func('void slirp_pollfds_fill(void *slirp, _Inout_ uint32_t *timeout, SlirpAddPollCb *add_poll, void *opaque)'),
    pollfdsPoll: lib.func('void slirp_pollfds_poll(void *slirp, int select_error, SlirpGetREventsCb *get_revents, void *opaque)'),
    input: lib.func('void slirp_input(void *slirp, const uint8_t *pkt, int pkt_len)'),
    handleTimer: lib.func('void slirp_handle_timer(void *slirp, int id, void *cb_opaque)'),
    addHostfwd: lib.func('int slirp_add_hostfwd(void *slirp, int is_udp, uint32_t host_addr, int host_port, uint32_t guest_addr, int guest_port)'),
    cleanup: lib.func('void slirp_cleanup(void *slirp)'),
  };
}

function main(init: SlirpThreadInit): void {
  configureLogging(init.logLevel);
  const s = bind();
  const toSlirp = PacketRing.attach(init.toSlirp);
  const fromSlirp = PacketRing.attach(init.fromSlirp);
  const wake = EventNotifier.attach(init.wake);
  const stop = new Int32Array(init.stop);
  const start = process.hrtime.bigint();
  const now = () => process.hrtime.bigint() - start;
  const guestLog = new RateLimitedLog(log('net'));
  /** Timers slirp asked for, by the address of the handle given it: the handle, its id and opaque, and when it expires (ms of `now`), if set. */
  const timers = new Map<bigint, { handle: unknown; id: number; opaque: unknown; expireMs: number | undefined }>();
  const registered = [
    koffi.register((buf: unknown, len: number) => {
      // A full ring drops the frame; the guest's TCP sends again.
      fromSlirp.put([new Uint8Array(koffi.view(buf, len))]);
      wake.notify();
      return len;
    }, koffi.pointer(s.protos.write)),
    koffi.register((msg: string) => guestLog.warn('slirp', { reason: msg }, 'user-mode networking refused a packet from the guest'), koffi.pointer(s.protos.guestError)),
    koffi.register(() => now(), koffi.pointer(s.protos.clock)),
    koffi.register(() => null, koffi.pointer(s.protos.timerNew)),
    koffi.register((timer: unknown) => {
      const t = timers.get(koffi.address(timer));
      timers.delete(koffi.address(timer));
      if (t) koffi.free(t.handle);
    }, koffi.pointer(s.protos.timerFree)),
    koffi.register((timer: unknown, expire: number | bigint) => {
      const t = timers.get(koffi.address(timer));
      if (t) t.expireMs = Number(expire);
    }, koffi.pointer(s.protos.timerMod)),
    koffi.register(() => {}, koffi.pointer(s.protos.fd)),
    koffi.register(() => {}, koffi.pointer(s.protos.notify)),
    koffi.register(() => {}, koffi.pointer(s.protos.initCompleted)),
    koffi.register((id: number, opaque: unknown) => {
      // A byte of its own: slirp needs a distinct pointer per timer.
      const handle = koffi.alloc('uint8_t', 1);
      timers.set(koffi.address(handle), { handle, id, opaque, expireMs: undefined });
      return handle;
    }, koffi.pointer(s.protos.timerNewOpaque)),
  ];
  const [sendPacket, guestError, clock, timerNew, timerFree, timerMod, fd, notify, initCompleted, timerNewOpaque] = registered;
  const cfg = {
    version: SLIRP_CONFIG_VERSION, restricted: 0, in_enabled: true, vnetwork: inAddr(USER_NET.network), vnetmask: inAddr(USER_NET.netmask), vhost: inAddr(USER_NET.host),
    in6_enabled: false, vprefix_addr6: new Array(16).fill(0), vprefix_len: 0, vhost6: new Array(16).fill(0), vhostname: null, tftp_server_name: null, tftp_path: null,
    bootfile: null, vdhcp_start: inAddr(USER_NET.dhcpStart), vnameserver: inAddr(USER_NET.nameserver), vnameserver6: new Array(16).fill(0), vdnssearch: null,
    vdomainname: null, if_mtu: init.mtu, if_mru: init.mtu, disable_host_loopback: false, enable_emu: false, outbound_addr: null, outbound_addr6: null,
    disable_dns: false, disable_dhcp: false,
  };
  const cbs = {
    send_packet: sendPacket, guest_error: guestError, clock_get_ns: clock, timer_new: timerNew, timer_free: timerFree, timer_mod: timerMod,
    register_poll_fd: fd, unregister_poll_fd: fd, notify, init_completed: initCompleted, timer_new_opaque: timerNewOpaque,
  };
  const slirp = s.slirpNew(cfg, cbs, null);
  if (!slirp) throw new Error('slirp_new failed');
  for (const f of init.forwards) {
    const r = s.addHostfwd(slirp, f.protocol === 'udp' ? 1 : 0, inAddr(f.hostAddress || '0.0.0.0'), f.hostPort, inAddr(f.guestAddress || USER_NET.dhcpStart), f.guestPort);
    if (r < 0) log('net').error({ forward: f }, 'a port forward could not listen on the host');
  }
  /** poll()'s array: the eventfd first, then what slirp asks for this round. */
  const pollfds = new PollFds(64);
  const add = (pfd: number, events: number) =>
    pollfds.add(pfd, (events & SLIRP_POLL.IN ? POLL.IN : 0) | (events & SLIRP_POLL.OUT ? POLL.OUT : 0) | (events & SLIRP_POLL.PRI ? POLL.PRI : 0));
  const addPoll = koffi.register((pfd: number, events: number) => add(pfd, events) - 1, koffi.pointer(s.protos.addPoll));
  const getRevents = koffi.register((idx: number) => {
    const r = pollfds.revents(idx + 1);
    return (r & POLL.IN ? SLIRP_POLL.IN : 0) | (r & POLL.OUT ? SLIRP_POLL.OUT : 0) | (r & POLL.PRI ? SLIRP_POLL.PRI : 0) | (r & POLL.ERR ? SLIRP_POLL.ERR : 0) | (r & POLL.HUP ? SLIRP_POLL.HUP : 0);
  }, koffi.pointer(s.protos.getRevents));
  const counter = new Uint8Array(8);
  while (Atomics.load(stop, 0) === 0) {
    pollfds.clear();
    add(init.eventFd, SLIRP_POLL.IN);
    const timeout = [1000];
    s.pollfdsFill(slirp, timeout, addPoll, null);
    const nowMs = Number(now() / 1_000_000n);
    let wait = timeout[0];
    for (const t of timers.values()) if (t.expireMs !== undefined) wait = Math.max(0, Math.min(wait, t.expireMs - nowMs));
    const r = pollfds.poll(wait);
    if (r === -1 && errno() !== EINTR) check('poll', -1);
    if (pollfds.revents(0) !== 0) libc().read(init.eventFd, counter, 8);
    s.pollfdsPoll(slirp, r === -1 ? 1 : 0, getRevents, null);
    const after = Number(now() / 1_000_000n);
    for (const t of [...timers.values()]) {
      if (t.expireMs !== undefined && t.expireMs <= after) {
        t.expireMs = undefined;
        s.handleTimer(slirp, t.id, t.opaque);
      }
    }
    for (let record = toSlirp.peek(); record; record = toSlirp.peek()) {
      s.input(slirp, record, record.length);
      toSlirp.release(record);
    }
  }
  s.cleanup(slirp);
  for (const t of timers.values()) koffi.free(t.handle);
  for (const cb of [...registered, addPoll, getRevents]) koffi.unregister(cb);
  parentPort?.close();
}

main(workerData as SlirpThreadInit);
