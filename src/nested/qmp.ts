// A minimal client for QEMU's machine protocol (QMP) on the nested VM's monitor
// socket: enough to ask a VM that stopped making progress what its vCPUs are
// doing, through QMP's pass-through to the human monitor. One connection per
// question, so a wedged earlier one cannot hold a later one up.
import { connect } from 'node:net';

interface QmpReply {
  id?: number;
  return?: unknown;
  error?: { class: string; desc: string };
}

/**
 * Runs each human-monitor command (e.g. "info registers -a") in order on the QMP socket at
 * `path` and returns their outputs; rejects when QEMU does not answer within `timeoutMs`.
 */
export function humanMonitor(path: string, commands: string[], timeoutMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const outputs: string[] = [];
    let buffered = '';
    let greeted = false;
    const finish = (e?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (e) reject(e);
      else resolve(outputs);
    };
    const timer = setTimeout(() => finish(new Error(`QEMU's monitor did not answer in ${timeoutMs / 1000} s`)), timeoutMs);
    const send = (execute: string, id: number, args?: object) => socket.write(`${JSON.stringify({ execute, id, ...(args ? { arguments: args } : {}) })}\n`);
    const next = (id: number) => {
      if (id > commands.length) return finish();
      send('human-monitor-command', id, { 'command-line': commands[id - 1] });
    };
    socket.setEncoding('utf8');
    socket.on('error', (e) => finish(new Error(`cannot reach QEMU's monitor: ${e.message}`)));
    socket.on('close', () => finish(new Error("QEMU's monitor closed the connection")));
    socket.on('data', (text: string) => {
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        let msg: QmpReply & { QMP?: unknown };
        try {
          msg = JSON.parse(line) as QmpReply & { QMP?: unknown };
        } catch {
          return finish(new Error(`QEMU's monitor sent a line that is not JSON: ${line.slice(0, 80)}`));
        }
        if (msg.QMP !== undefined && !greeted) {
          greeted = true;
          send('qmp_capabilities', 0);
        } else if (msg.error) {
          finish(new Error(`QEMU's monitor refused ${msg.id ? `"${commands[msg.id - 1]}"` : 'the session'}: ${msg.error.desc}`));
        } else if (msg.id !== undefined) {
          if (msg.id > 0) outputs.push(String(msg.return ?? ''));
          next(msg.id + 1);
        }
      }
    });
  });
}
