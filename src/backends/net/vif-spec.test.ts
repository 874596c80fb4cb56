import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseVifSpec, VifSpecError } from './vif-spec.js';

test("xl's vif keys, and xenkvm's net= and hostfwd=", () => {
  assert.deepEqual(parseVifSpec('mac=00:16:3E:01:02:03, bridge=xenbr0, vifname=vif1.0, mtu=9000', 0), {
    devid: 0, mac: '00:16:3e:01:02:03', net: undefined, vifname: 'vif1.0', bridge: 'xenbr0', script: undefined, mtu: 9000, forwards: [],
  });
  const user = parseVifSpec('net=user,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53', 1);
  assert.equal(user.net, 'user');
  assert.deepEqual(user.forwards, [
    { protocol: 'tcp', hostAddress: '', hostPort: 2222, guestAddress: '', guestPort: 22 },
    { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 5353, guestAddress: '10.0.2.15', guestPort: 53 },
  ]);
  assert.equal(parseVifSpec('net=tap,script=/etc/xen/scripts/vif-bridge', 0).script, '/etc/xen/scripts/vif-bridge');
});

test('a MAC address left out is made up in Xen\'s OUI, unicast and locally unique', () => {
  const a = parseVifSpec('', 0).mac;
  assert.match(a, /^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
  assert.notEqual(parseVifSpec('', 0).mac + parseVifSpec('', 0).mac, a + a);
});

test('what cannot be used is one line each', () => {
  const bad: [string, RegExp][] = [
    ['bridge', /"bridge" in vif "bridge" is not KEY=VALUE/],
    ['colour=blue', /unknown key "colour"/],
    ['mac=00:16:3e:00:00:01,mac=00:16:3e:00:00:02', /mac is given twice/],
    ['type=ioemu', /type ioemu is an emulated card/],
    ['net=bridge', /net must be tap or user, not "bridge"/],
    ['net=user,bridge=br0', /bridge need net=tap/],
    ['net=tap,hostfwd=tcp::80-:80', /hostfwd needs net=user/],
    ['hostfwd=tcp::0-:22', /hostfwd must be tcp:/],
    ['hostfwd=sctp::1-:2', /hostfwd must be/],
    ['mtu=67', /mtu must be a whole number from 68 to 65521, not "67"/],
    ['mac=01:16:3e:00:00:01', /is a multicast address/],
    ['mac=00:16:3e:00:00', /mac must be six hex bytes/],
    ['vifname=this-name-is-too-long', /vifname must be 1 to 15/],
  ];
  for (const [text, message] of bad) assert.throws(() => parseVifSpec(text, 0), (e: Error) => e instanceof VifSpecError && message.test(e.message), text);
});
