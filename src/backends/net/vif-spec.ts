// xl's network interface specification (xl-network-configuration(5)), as
// `--vif` takes it: comma-separated KEY=VALUE pairs. xenkvm serves mac,
// bridge, script, vifname, mtu and type=vif, and adds where the packets go:
// net=tap (a TAP device on the host, which needs CAP_NET_ADMIN) or net=user
// (user-mode networking through libslirp, for anyone), and for net=user,
// hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (or udp:), given once
// per forwarded port, as QEMU spells it.
import { randomBytes } from 'node:crypto';

export type LinkKind = 'tap' | 'user';

export interface PortForward {
  protocol: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  guestAddress: string;
  guestPort: number;
}

export interface VifSpec {
  /** The xenbus devid: the interface's place among the guest's, from 0. */
  devid: number;
  mac: string;
  /** Where the device's packets go; undefined where the spec leaves it to what xenkvm may do. */
  net: LinkKind | undefined;
  /** net=tap: the TAP device's name (vifname), the bridge to add it to, a script to run on it, its MTU. */
  vifname: string | undefined;
  bridge: string | undefined;
  script: string | undefined;
  mtu: number;
  forwards: PortForward[];
}

/** An interface specification that cannot be used: the message says what and why. */
export class VifSpecError extends Error {
  override name = 'VifSpecError';
}

const KEYS = new Set(['mac', 'bridge', 'script', 'vifname', 'mtu', 'type', 'net', 'hostfwd']);
/** Xen's organisationally unique identifier, which xl gives a MAC address it makes up. */
const XEN_OUI = [0x00, 0x16, 0x3e];
const DEFAULT_MTU = 1500;

export function parseVifSpec(text: string, devid: number): VifSpec {
  const given = new Map<string, string>();
  const forwards: PortForward[] = [];
  for (const raw of text.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw new VifSpecError(`"${part}" in vif "${text}" is not KEY=VALUE`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!KEYS.has(key)) throw new VifSpecError(`unknown key "${key}" in vif "${text}"`);
    if (key === 'hostfwd') {
      forwards.push(parseForward(value, text));
      continue;
    }
    if (given.has(key)) throw new VifSpecError(`${key} is given twice in vif "${text}"`);
    given.set(key, value);
  }
  const type = given.get('type') ?? 'vif';
  if (type !== 'vif') throw new VifSpecError(`vif "${text}": type ${type} is an emulated card, which xenkvm does not offer (type=vif is the PV device)`);
  const net = given.get('net');
  if (net !== undefined && net !== 'tap' && net !== 'user') throw new VifSpecError(`vif "${text}": net must be tap or user, not "${net}"`);
  const tapOnly = ['bridge', 'script', 'vifname'].filter((k) => given.has(k));
  if (net === 'user' && tapOnly.length) throw new VifSpecError(`vif "${text}": ${tapOnly.join(' and ')} need net=tap`);
  if (net === 'tap' && forwards.length) throw new VifSpecError(`vif "${text}": hostfwd needs net=user`);
  const mtuText = given.get('mtu');
  const mtu = mtuText === undefined ? DEFAULT_MTU : /^\d+$/.test(mtuText) ? Number(mtuText) : NaN;
  if (!(mtu >= 68 && mtu <= 65521)) throw new VifSpecError(`vif "${text}": mtu must be a whole number from 68 to 65521, not "${mtuText}"`);
  const vifname = given.get('vifname');
  if (vifname !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(vifname)) throw new VifSpecError(`vif "${text}": vifname must be 1 to 15 letters, digits, '.', '-' or '_', not "${vifname}"`);
  return {
    devid,
    mac: parseMac(given.get('mac'), text),
    net: net as LinkKind | undefined,
    vifname,
    bridge: given.get('bridge'),
    script: given.get('script'),
    mtu,
    forwards,
  };
}

function parseMac(text: string | undefined, spec: string): string {
  if (text === undefined) {
    const tail = randomBytes(3);
    return [...XEN_OUI, tail[0] & 0x7f, tail[1], tail[2]].map((b) => b.toString(16).padStart(2, '0')).join(':');
  }
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) throw new VifSpecError(`vif "${spec}": mac must be six hex bytes such as 00:16:3e:12:34:56, not "${text}"`);
  if (Number.parseInt(text.slice(0, 2), 16) & 1) throw new VifSpecError(`vif "${spec}": mac ${text} is a multicast address`);
  return text.toLowerCase();
}

function parseForward(value: string, spec: string): PortForward {
  const m = /^(tcp|udp):([^:]*):(\d+)-([^:]*):(\d+)$/.exec(value);
  const port = (s: string) => (Number(s) >= 1 && Number(s) <= 65535 ? Number(s) : NaN);
  if (!m || Number.isNaN(port(m[3])) || Number.isNaN(port(m[5]))) {
    throw new VifSpecError(`vif "${spec}": hostfwd must be tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (or udp:), ports 1 to 65535, not "${value}"`);
  }
  return { protocol: m[1] as 'tcp' | 'udp', hostAddress: m[2], hostPort: Number(m[3]), guestAddress: m[4], guestPort: Number(m[5]) };
}
