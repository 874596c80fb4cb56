import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskSpecError, parseDiskSpec, vdevNumber } from './disk-spec.js';

const spec = (over: Partial<ReturnType<typeof parseDiskSpec>>) => ({ target: '/dev/vg/guest-volume', format: 'raw', vdev: 'hda', devid: 768, readOnly: false, cdrom: false, discard: true, ...over });

test('xl\'s equivalent spellings of one disk', () => {
  for (const text of ['/dev/vg/guest-volume,,hda', '/dev/vg/guest-volume,raw,hda,rw', 'format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume']) {
    assert.deepEqual(parseDiskSpec(text), spec({}), text);
  }
  for (const text of ['/root/image.iso,,hdc,cdrom', '/root/image.iso,,hdc,,cdrom', '/root/image.iso,raw,hdc,devtype=cdrom', 'format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso']) {
    assert.deepEqual(parseDiskSpec(text), spec({ target: '/root/image.iso', vdev: 'hdc', devid: 22 << 8, readOnly: true, cdrom: true }), text);
  }
});

test('target= takes the rest, commas and equals signs included; flags and access spellings', () => {
  assert.equal(parseDiskSpec('vdev=xvda, target=/images/a,b=c.img').target, '/images/a,b=c.img');
  assert.equal(parseDiskSpec('img.raw,,xvdb,r').readOnly, true);
  assert.equal(parseDiskSpec('img.raw,,xvdb,w').readOnly, false);
  assert.equal(parseDiskSpec('no-discard,img.raw,,xvdb').discard, false);
  assert.equal(parseDiskSpec('img.qcow2,qcow2,xvdb').format, 'qcow2');
});

test('what cannot be a disk is one clear error', () => {
  const bad: [string, RegExp][] = [
    ['', /has no target/],
    [',,xvda', /has no target/],
    ['img.raw', /has no vdev/],
    ['img.raw,,vda', /"vda" is not a virtual device name/],
    ['img.raw,vmdk,xvda', /format must be one of raw, qcow, qcow2, vhd, qed, not "vmdk"/],
    ['img.raw,,xvda,rx', /access must be ro or rw, not "rx"/],
    ['img.raw,,xvda,rw,extra', /too many parameters/],
    ['img.raw,,xvda,color=red', /unknown key "color"/],
    ['vdev=xvda,vdev=xvdb,target=x', /vdev is given twice/],
    ['img.iso,,hdc,rw,devtype=cdrom', /a cdrom is read-only/],
    ['img.raw,,xvda,backendtype=tap', /backendtype tap is not served/],
  ];
  for (const [text, message] of bad) assert.throws(() => parseDiskSpec(text), (e: unknown) => e instanceof DiskSpecError && message.test(e.message), text);
});

test('virtual device numbers as Xen\'s vbd interface gives them', () => {
  assert.equal(vdevNumber('xvda'), 51712);
  assert.equal(vdevNumber('xvdb'), 51728);
  assert.equal(vdevNumber('xvda1'), 51713);
  assert.equal(vdevNumber('xvdp15'), (202 << 8) | (15 << 4) | 15);
  assert.equal(vdevNumber('xvdq'), (1 << 28) | (16 << 8));
  assert.equal(vdevNumber('xvdaa'), (1 << 28) | (26 << 8));
  assert.equal(vdevNumber('d0p0'), 51712);
  assert.equal(vdevNumber('d16'), (1 << 28) | (16 << 8));
  assert.equal(vdevNumber('hda'), 3 << 8);
  assert.equal(vdevNumber('hdb1'), (3 << 8) | 64 | 1);
  assert.equal(vdevNumber('hdd'), (22 << 8) | 64);
  assert.equal(vdevNumber('sdb2'), (8 << 8) | 16 | 2);
  for (const bad of ['xvd', 'xvda0', 'hde', 'sdq', 'sda16', 'hda64', 'd01', 'nvme0n1']) assert.equal(vdevNumber(bad), undefined, bad);
});
