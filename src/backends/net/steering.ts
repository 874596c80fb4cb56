// Which of a network device's queues each packet from the host goes to, and
// the packets waiting for a queue's receive buffers. A TAP device hands each
// packet to one of its queues by its own flow steering; where the frontend
// set a hash mapping over the control ring, that mapping decides instead, and
// a packet is put on the ring of the queue it names at once (all the queues
// live on one thread), or waits there behind others until the guest posts
// buffers. When the frontend changes its settings, the packets still waiting
// go where the new ones send them, before it hears the answer: from then on
// no packet reaches a ring by the old settings.
import type { Packet } from './packet.js';

/** What steering needs of a queue: give the guest a packet (true), or false while it has too few receive buffers. */
export interface PacketSink {
  receive(packet: Packet): boolean;
}

/** Packets from other queues' host rings that may wait for a queue; more are dropped (and counted). */
export const STEERED_MAX = 256;

interface Waiting {
  packet: Packet;
  /** The queue whose host ring it came in on: where it goes while no hash mapping is set. */
  from: number;
}

export class Steering {
  /** Per queue, packets for it that wait for its buffers, oldest first. */
  private readonly waiting: Waiting[][];
  /** Per queue, packets from its host ring the settings sent to another queue. */
  readonly steeredAway: number[];
  /** Per queue, packets sent to it from another queue's host ring that found too many waiting. */
  readonly steeredDropped: number[];

  constructor(
    private readonly sinks: readonly PacketSink[],
    /** The queue the frontend's settings send a packet to (attaching its hash), or undefined to keep it on the host's. */
    private readonly steer: (packet: Packet) => number | undefined,
  ) {
    this.waiting = sinks.map(() => []);
    this.steeredAway = sinks.map(() => 0);
    this.steeredDropped = sinks.map(() => 0);
  }

  /**
   * Gives queue `index` what waits for it, then steers what its host ring holds (`next` takes the
   * oldest), until that queue runs out of buffers: the rest stays in the host ring.
   */
  deliver(index: number, next: () => Packet | undefined): void {
    const mine = this.waiting[index];
    for (;;) {
      while (mine.length) {
        if (!this.sinks[index].receive(mine[0].packet)) return;
        mine.shift();
      }
      const packet = next();
      if (!packet) return;
      const to = this.steer(packet) ?? index;
      if (to !== index) this.steeredAway[index]++;
      this.place(packet, index, to);
    }
  }

  /** The frontend changed its settings: every packet still waiting goes where they now send it. */
  resteer(): void {
    for (const w of this.waiting.flatMap((list) => list.splice(0))) this.place(w.packet, w.from, this.steer(w.packet) ?? w.from);
  }

  /** Puts a packet that came in on queue `from` on queue `to`'s ring, or in its waiting list (only then an object). */
  private place(packet: Packet, from: number, to: number): void {
    const list = this.waiting[to];
    if (list.length === 0 && this.sinks[to].receive(packet)) return;
    // A queue's own packets are bounded by its host ring: deliver() stops taking them while any wait.
    if (to !== from && list.length >= STEERED_MAX) this.steeredDropped[to]++;
    else list.push({ packet, from });
  }
}
