/* Minimal printf to port 0xe9: %s %d %i %u %x %X %p %c %%, flags '0' '-',
 * width, length l/ll/z. Each call is formatted first, then written under a
 * lock so concurrent CPUs never interleave within one call. */
#include "kitlib.h"

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

/* 64-bit divide without libgcc (not available for -m32 here). */
static unsigned divmod(uint64_t *v, unsigned base)
{
#if defined(__x86_64__)
	unsigned r = (unsigned)(*v % base);
	*v /= base;
	return r;
#else
	uint32_t hi = (uint32_t)(*v >> 32), lo = (uint32_t)*v, qhi = hi / base, r = hi % base, qlo;
	__asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(base));
	*v = ((uint64_t)qhi << 32) | qlo;
	return r;
#endif
}

static void put_num(struct out *o, uint64_t v, unsigned base, bool neg, int width, char pad, bool left, bool upper)
{
	char tmp[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		tmp[n++] = digits[divmod(&v, base)];
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (neg && pad == '0')
		put(o, '-');
	if (!left)
		for (; width > len; width--)
			put(o, pad);
	if (neg && pad != '0')
		put(o, '-');
	while (n)
		put(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			put(o, ' ');
}

int kit_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		bool left = false;
		int width = 0, lng = 0;
		for (;; fmt++) {
			if (*fmt == '0')
				pad = '0';
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		if (left)
			pad = ' ';
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng >= 2 ? va_arg(ap, long long) : lng ? va_arg(ap, long) : va_arg(ap, int);
			put_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad, left, false);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v;
			if (lng >= 2)
				v = va_arg(ap, unsigned long long);
			else if (lng == 1)
				v = va_arg(ap, unsigned long);
			else
				v = va_arg(ap, unsigned int);
			put_num(&o, v, *fmt == 'u' ? 10 : 16, false, width, pad, left, *fmt == 'X');
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, width, pad, left, false);
			break;
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int n = (int)strlen(s);
			if (!left)
				for (; width > n; width--)
					put(&o, ' ');
			while (*s)
				put(&o, *s++);
			if (left)
				for (; width > n; width--)
					put(&o, ' ');
			break;
		}
		case '%':
			put(&o, '%');
			break;
		case 0:
			fmt--;
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)o.len;
}

int kit_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kit_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* xchg-based lock; the owner (cpu index + 1) lets a fatal path on the
 * owning CPU break it. */
static volatile int console_lock, console_owner;

static void lock(void)
{
	int me = kit_cpu_index() + 1;
	while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE) != 0)
		while (console_lock)
			cpu_relax();
	console_owner = me;
}

static void unlock(void)
{
	console_owner = 0;
	__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void kit_console_force_unlock(void)
{
	if (console_lock && console_owner == kit_cpu_index() + 1)
		unlock();
}

void kit_puts_raw(const char *s)
{
	while (*s)
		outb(0xe9, (uint8_t)*s++);
}

void kit_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	kit_vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	lock();
	kit_puts_raw(buf);
	unlock();
}
