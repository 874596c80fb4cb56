import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import { seededRandom } from '../common/seeded-random.js';
import { XENSTORE_PAYLOAD_MAX, XS } from '../xen/abi/xenstore.js';
import { XenStoreSocket } from './socket.js';
import { XenStore } from './store.js';
import { encodeMessage, MessageFramer, payloadStrings, stringsPayload, type XsMessage } from './wire.js';

/** A client of the socket: what it sends, what it got back, and whether the server hung up. */
function client(path: string) {
  const socket: Socket = connect(path);
  const framer = new MessageFramer();
  const got: XsMessage[] = [];
  let ended = false;
  const closed = new Promise<void>((resolve) => socket.on('close', () => ((ended = true), resolve())));
  socket.on('data', (b: Buffer) => got.push(...framer.push(b)));
  socket.on('error', () => {});
  return { socket, got, closed, ended: () => ended };
}

/** Waits until `done()` holds, or fails after `ms`. */
async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  for (const start = Date.now(); !done(); await new Promise((r) => setTimeout(r, 5))) {
    if (Date.now() - start > ms) assert.fail(`timed out waiting for ${what}`);
  }
}

test('fuzz: clients sending garbage are answered or cut off, and a well-behaved client beside them is served', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-xs-socket-'));
  const path = join(dir, 'xenstored.sock');
  const log = capturedLogger();
  const store = new XenStore();
  const server = await XenStoreSocket.listen(path, store, log.logger);
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let cutOff = 0;
  let answered = 0;
  for (let seed = 1; seed <= 24; seed++) {
    const rand = seededRandom(seed);
    const chunks: Uint8Array[] = [];
    // Odd clients send well-formed messages of random types and contents; even ones raw bytes too.
    for (let i = 0; i < 40; i++) {
      chunks.push(seed % 2 === 1 || rand(4)
        ? encodeMessage({ type: rand(40), reqId: i, txId: rand(3), payload: new Uint8Array(rand(60)).map(() => (rand(3) ? 0x61 + rand(26) : rand(256))) })
        : new Uint8Array(1 + rand(40)).map(() => rand(256)));
    }
    // Every third client ends with a payload larger than any xenstored takes.
    if (seed % 3 === 0) chunks.push(encodeMessage({ type: XS.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(0) }).map((b, i) => (i === 13 ? 0x20 : b)));
    // The server must cut off exactly the clients whose stream breaks the framing somewhere.
    const reference = new MessageFramer();
    for (const c of chunks) reference.push(c);
    const breaks = reference.broken !== null;
    const bad = client(path);
    for (const c of chunks) bad.socket.write(c);

    const good = client(path);
    good.socket.write(encodeMessage({ type: XS.GET_DOMAIN_PATH, reqId: 77, txId: 0, payload: stringsPayload('3') }));
    await until(() => good.got.length > 0, 5000, `the well-behaved client's reply (seed ${seed})`);
    assert.deepEqual(good.got.map((m) => [m.type, m.reqId, payloadStrings(m.payload)]), [[XS.GET_DOMAIN_PATH, 77, ['/local/domain/3']]]);
    good.socket.end();

    if (breaks) {
      await until(bad.ended, 5000, `the server to cut off client ${seed}`);
      cutOff++;
    } else if (reference.buffered === 0) {
      // Still connected, between messages: it is answered like anyone else.
      const ping = 1000 + seed;
      bad.socket.write(encodeMessage({ type: XS.GET_DOMAIN_PATH, reqId: ping, txId: 0, payload: stringsPayload('5') }));
      await until(() => bad.got.some((m) => m.reqId === ping), 5000, `client ${seed}'s reply`);
      assert.equal(bad.ended(), false);
      answered++;
      bad.socket.end();
      await bad.closed;
    } else {
      bad.socket.end();
      await bad.closed;
    }
    assert.ok(bad.got.every((m) => m.payload.length <= XENSTORE_PAYLOAD_MAX));
  }
  assert.ok(cutOff >= 8 && answered >= 6, `${cutOff} clients cut off, ${answered} answered after their garbage`);
  assert.deepEqual(log.errors(), []);
  assert.equal(log.warns().filter((l) => /broke the protocol/.test(l.msg)).length, cutOff);
  // The store is whole: a write and a read still work.
  const last = client(path);
  last.socket.write(encodeMessage({ type: XS.WRITE, reqId: 1, txId: 0, payload: stringsPayload('/fuzz', 'ok').subarray(0, -1) }));
  last.socket.write(encodeMessage({ type: XS.READ, reqId: 2, txId: 0, payload: stringsPayload('/fuzz') }));
  await until(() => last.got.length === 2, 5000, 'the write and the read');
  assert.deepEqual(last.got.map((m) => [m.reqId, new TextDecoder().decode(m.payload)]), [[1, 'OK\0'], [2, 'ok']]);
  last.socket.end();
  await last.closed;
});
