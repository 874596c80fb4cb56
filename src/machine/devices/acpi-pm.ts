// ACPI power management registers as the FADT describes them: the
// hardware-reduced sleep control/status registers, the legacy PM1a event and
// control blocks, and the reset register (with the keyboard controller's
// pulse-reset command, which many kernels try first or last).
import type { PortDevice } from './io-bus.js';
import type { Platform } from './platform.js';

const SLP_EN_HW_REDUCED = 1 << 5;
const SLP_TYP_HW_REDUCED_SHIFT = 2;
const SLP_EN_PM1 = 1 << 13;
const SLP_TYP_PM1_SHIFT = 10;
const SCI_EN = 1;
const KBC_PULSE_RESET = 0xfe;
const RST_CPU = 1 << 2;

export class AcpiPm {
  constructor(
    private readonly platform: Platform,
    private readonly s5SleepType: number,
  ) {}

  private sleep(slpTyp: number): void {
    if (slpTyp === this.s5SleepType) this.platform.requestStop('poweroff', 'guest entered ACPI S5 (soft off)');
    // S1–S4 are not offered (the DSDT has only \_S5): other sleep types are ignored, as firmware without them does.
  }

  /** SLEEP_CONTROL_REG (8-bit): SLP_TYP in bits 2–4, SLP_EN bit 5. */
  readonly sleepControl: PortDevice = {
    read: () => 0,
    write: (_o, _s, v) => {
      if (v & SLP_EN_HW_REDUCED) this.sleep((v >> SLP_TYP_HW_REDUCED_SHIFT) & 7);
    },
  };

  /** SLEEP_STATUS_REG: WAK_STS is never set because the machine never wakes from sleep. */
  readonly sleepStatus: PortDevice = { read: () => 0, write: () => {} };

  /** PM1a_EVT_BLK: status and enable words; there are no fixed events to report. */
  readonly pm1aEvent: PortDevice = { read: () => 0, write: () => {} };

  /** PM1a_CNT_BLK (16-bit): SCI_EN reads 1 (ACPI mode is always on), SLP_TYP bits 10–12, SLP_EN bit 13. */
  readonly pm1aControl: PortDevice = {
    read: (offset) => (offset === 0 ? SCI_EN : 0),
    write: (offset, size, v) => {
      const word = offset === 0 ? v : v << 8;
      if (size >= 2 || offset === 1) {
        if (word & SLP_EN_PM1) this.sleep((word >> SLP_TYP_PM1_SHIFT) & 7);
      }
    },
  };

  /** The FADT's RESET_REG, port 0xcf9 (the chipset reset control register): RST_CPU (bit 2) resets. */
  readonly reset: PortDevice = {
    read: () => 0,
    write: (_o, _s, v) => {
      if (v & RST_CPU) this.platform.requestStop('reset', 'guest wrote the reset register');
    },
  };

  /** 8042 command port: only the pulse-reset command is acted on; status reads 0 (no data, ready for commands). */
  readonly keyboardController: PortDevice = {
    read: () => 0,
    write: (_o, _s, v) => {
      if ((v & 0xff) === KBC_PULSE_RESET) this.platform.requestStop('reset', 'guest pulsed reset through the keyboard controller');
    },
  };
}
