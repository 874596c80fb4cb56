/* The 8254 PIT (KVM's own, in the kernel), as a kernel's early TSC
 * calibration and a legacy timer use it: channel 2 gated through port 0x61
 * counts down and raises OUT2 when it expires; channel 0's interrupt reaches
 * IOAPIC pin 2, where the MADT's override of IRQ 0 says it is, and never
 * pin 0. */
#include "../kit/kit.h"

#define IOAPIC ((volatile uint32_t *)(uintptr_t)0xfec00000)
#define VECTOR_PIN2 0x62
#define VECTOR_PIN0 0x63
#define PIT_CH0 0x40
#define PIT_CH2 0x42
#define PIT_MODE 0x43
#define PORT_B 0x61 /* bit 0: channel 2's gate, bit 1: speaker, bit 5: OUT2 */
#define PIT_HZ 1193182

static volatile uint32_t pin2_irqs, pin0_irqs;

static void on_pin2(struct kit_frame *f)
{
	(void)f;
	pin2_irqs++;
}
static void on_pin0(struct kit_frame *f)
{
	(void)f;
	pin0_irqs++;
}

static void ioapic_write(uint32_t reg, uint32_t value)
{
	IOAPIC[0] = reg;
	IOAPIC[4] = value;
}

/* Channel 2's count, latched. */
static uint16_t channel2_count(void)
{
	outb(PIT_MODE, 0x80);
	uint8_t lo = inb(PIT_CH2);
	return (uint16_t)(lo | inb(PIT_CH2) << 8);
}

static void channel2_case(void)
{
	outb(PORT_B, (inb(PORT_B) & ~0x02) | 0x01); /* gate on, speaker off */
	outb(PIT_MODE, 0xb0);                       /* channel 2, low then high byte, mode 0 */
	outb(PIT_CH2, 0xff);
	outb(PIT_CH2, 0xff);
	/* Mode 0 drives OUT2 low until the count runs out (no PIT, or no port 0x61: all-ones). */
	KIT_CHECK((inb(PORT_B) & 0x20) == 0, "OUT2 high just after channel 2 was loaded (port 0x61 reads 0x%x)", inb(PORT_B));
	uint16_t first = channel2_count();
	uint16_t later = first;
	KIT_WAIT_FOR((later = channel2_count()) != first, 1000);
	KIT_CHECK(later < first, "channel 2 does not count down: 0x%x then 0x%x", first, later);
	/* 65,535 ticks: 55 ms; OUT2 goes high when the count passes 0. */
	KIT_CHECK(KIT_WAIT_FOR(inb(PORT_B) & 0x20, 3000), "OUT2 never went high (count now 0x%x)", channel2_count());
	outb(PORT_B, inb(PORT_B) & ~0x03);
}

static void channel0_case(void)
{
	outb(0x21, 0xff); /* the legacy PIC masked, as a kernel using the IOAPIC leaves it */
	outb(0xa1, 0xff);
	ioapic_write(0x11 + 2 * 2, 0);
	ioapic_write(0x10 + 2 * 2, VECTOR_PIN2); /* fixed, physical, edge, active high, unmasked, to APIC 0 */
	ioapic_write(0x11 + 2 * 0, 0);
	ioapic_write(0x10 + 2 * 0, VECTOR_PIN0);
	uint16_t count = PIT_HZ / 100;
	outb(PIT_MODE, 0x34); /* channel 0, low then high byte, mode 2 (rate generator): 100 Hz */
	outb(PIT_CH0, count & 0xff);
	outb(PIT_CH0, count >> 8);
	sti();
	bool ticked = KIT_WAIT_FOR(pin2_irqs >= 5, 3000);
	cli();
	outb(PIT_MODE, 0x30); /* mode 0 with no count written: the channel stops */
	ioapic_write(0x10 + 2 * 2, 1u << 16);
	ioapic_write(0x10 + 2 * 0, 1u << 16);
	KIT_CHECK(ticked, "%u interrupts on IOAPIC pin 2 in ~3 s from a 100 Hz channel 0", pin2_irqs);
	KIT_CHECK(pin0_irqs == 0, "%u interrupts on IOAPIC pin 0 (IRQ 0 is GSI 2)", pin0_irqs);
}

void kit_main(void)
{
	kit_set_irq_handler(VECTOR_PIN2, on_pin2);
	kit_set_irq_handler(VECTOR_PIN0, on_pin0);
	kit_lapic_enable();
	kit_case("channel2", channel2_case);
	kit_case("channel0-irq", channel0_case);
}
