/* LAPIC one-shot timer interrupt, waited for by spinning and by hlt. */
#include "../kit/kit.h"

#define TIMER_VECTOR 0x41

static volatile int ticks;

static void on_timer(struct kit_frame *f)
{
	(void)f;
	ticks++;
}

static void spin_case(void)
{
	ticks = 0;
	sti();
	kit_lapic_timer_oneshot(TIMER_VECTOR, 1000000); /* 1 ms at KVM's 1 GHz APIC bus */
	bool got = kit_wait_flag(&ticks, 3000);
	kit_delay_ms(20); /* one-shot: no second tick */
	cli();
	KIT_CHECK(got, "no timer interrupt within ~3 s");
	KIT_CHECK(ticks == 1, "%d ticks from a one-shot timer", ticks);
}

static bool spin_ok;

static void hlt_case(void)
{
	KIT_CHECK(spin_ok, "skipped: spinning wait failed, hlt could hang");
	ticks = 0;
	kit_lapic_timer_oneshot(TIMER_VECTOR, 100000);
	KIT_HALT_UNTIL(ticks, 1000);
	KIT_CHECK(ticks == 1, "%d ticks after hlt", ticks);
}

void kit_main(void)
{
	kit_set_irq_handler(TIMER_VECTOR, on_timer);
	kit_lapic_enable();
	kit_case("timer-oneshot", spin_case);
	spin_ok = ticks == 1;
	kit_case("timer-hlt", hlt_case);
}
