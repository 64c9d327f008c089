/* AML byte emitter; see acpi_aml.h. References are to ACPI 6.4. */
#include "vmm/acpi_aml.h"

#include <stdlib.h>
#include <string.h>

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

static bool aml_reserve(struct aml *a, size_t more)
{
	size_t cap;
	uint8_t *p;

	if (a->failed)
		return false;
	if (more <= a->cap - a->len)
		return true;
	cap = a->cap ? a->cap : 256;
	while (cap - a->len < more) {
		if (cap > SIZE_MAX / 2) {
			a->failed = true;
			return false;
		}
		cap *= 2;
	}
	p = realloc(a->buf, cap);
	if (!p) {
		a->failed = true;
		return false;
	}
	a->buf = p;
	a->cap = cap;
	return true;
}

void aml_bytes(struct aml *a, const void *data, size_t len)
{
	if (len == 0 || !aml_reserve(a, len))
		return;
	memcpy(a->buf + a->len, data, len);
	a->len += len;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

/* §20.2.4: bits 7-6 of the lead byte count the bytes that follow (0-3).
 * With one byte, bits 5-0 hold the length; otherwise bits 3-0 hold the low
 * nibble and each following byte the next 8 bits. */
unsigned aml_pkglen_encode(uint8_t out[4], size_t content)
{
	for (unsigned n = 1; n <= 4; n++) {
		uint64_t total = (uint64_t)content + n;
		uint64_t limit = n == 1 ? 0x3f : (1ULL << (4 + 8 * (n - 1))) - 1;

		if (total > limit)
			continue;
		if (n == 1) {
			out[0] = (uint8_t)total;
			return 1;
		}
		out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (unsigned i = 1; i < n; i++)
			out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		return n;
	}
	return 0;
}

static bool aml_lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool aml_name_char(char c)
{
	return aml_lead_char(c) || (c >= '0' && c <= '9');
}

/* §20.2.2: NameString := <RootChar NamePath> | <PrefixPath NamePath>. */
void aml_name_string(struct aml *a, const char *path)
{
	char segs[255][4];
	unsigned nseg = 0;
	const char *p = path;

	if (!path) {
		a->failed = true;
		return;
	}
	if (*p == '\\') {
		aml_byte(a, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == '^') {
			aml_byte(a, AML_PARENT_CHAR);
			p++;
		}
	}
	while (*p) {
		unsigned n = 0;

		if (nseg == 255) {
			a->failed = true;
			return;
		}
		memset(segs[nseg], '_', 4);
		while (*p && *p != '.') {
			if (n == 4 || !(n == 0 ? aml_lead_char(*p) : aml_name_char(*p))) {
				a->failed = true;
				return;
			}
			segs[nseg][n++] = *p++;
		}
		if (n == 0) {
			a->failed = true;
			return;
		}
		nseg++;
		if (*p == '.') {
			p++;
			if (!*p) {
				a->failed = true;
				return;
			}
		}
	}
	if (nseg == 0) {
		aml_byte(a, 0x00); /* NullName */
		return;
	}
	if (nseg == 2)
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nseg);
	}
	aml_bytes(a, segs, 4 * (size_t)nseg);
}

/* §20.2.3: ComputationalData integers. */
void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0)
		aml_byte(a, AML_ZERO_OP);
	else if (v == 1)
		aml_byte(a, AML_ONE_OP);
	else if (v == UINT64_MAX)
		aml_byte(a, AML_ONES_OP);
	else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	/* AsciiCharList: 0x01-0x7f, then NullChar. */
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p > 0x7f) {
			a->failed = true;
			return;
		}
	}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static int aml_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Three letters of 5 bits each (A = 1) big-endian in a 16-bit word, then
 * four hex digits; the result is stored as a little-endian DWord. */
uint32_t aml_eisaid_value(const char *id)
{
	uint8_t b[4];
	int h[4];

	if (!id || strlen(id) != 7)
		return 0;
	for (int i = 0; i < 3; i++)
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
	for (int i = 0; i < 4; i++)
		if ((h[i] = aml_hex(id[3 + i])) < 0)
			return 0;
	uint16_t w = (uint16_t)(((id[0] - '@') << 10) | ((id[1] - '@') << 5) | (id[2] - '@'));
	b[0] = (uint8_t)(w >> 8);
	b[1] = (uint8_t)w;
	b[2] = (uint8_t)(h[0] << 4 | h[1]);
	b[3] = (uint8_t)(h[2] << 4 | h[3]);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = aml_eisaid_value(id);

	if (!v) {
		a->failed = true;
		return;
	}
	/* Always the DWord form, as iasl emits for EisaId(). */
	aml_byte(a, AML_DWORD_PREFIX);
	aml_le(a, v, 4);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_name_string(a, path);
}

/* The mark is the offset where the PkgLength goes. */
size_t aml_scope_begin(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_SCOPE_OP);
	mark = a->len;
	aml_name_string(a, path);
	return mark;
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	mark = a->len;
	aml_name_string(a, path);
	return mark;
}

size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	size_t mark;

	if (nargs > 7)
		a->failed = true;
	aml_byte(a, AML_METHOD_OP);
	mark = a->len;
	aml_name_string(a, path);
	/* MethodFlags: bits 0-2 ArgCount, bit 3 SerializeFlag, bits 4-7 SyncLevel. */
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 8 : 0)));
	return mark;
}

size_t aml_package_begin(struct aml *a, uint8_t nelems)
{
	size_t mark;

	aml_byte(a, AML_PACKAGE_OP);
	mark = a->len;
	aml_byte(a, nelems);
	return mark;
}

void aml_end(struct aml *a, size_t mark)
{
	uint8_t pl[4];
	unsigned n;

	if (a->failed)
		return;
	if (mark > a->len) {
		a->failed = true;
		return;
	}
	n = aml_pkglen_encode(pl, a->len - mark);
	if (n == 0 || !aml_reserve(a, n)) {
		a->failed = true;
		return;
	}
	memmove(a->buf + mark + n, a->buf + mark, a->len - mark);
	memcpy(a->buf + mark, pl, n);
	a->len += n;
}

void aml_buffer(struct aml *a, const void *data, size_t len)
{
	size_t mark;

	aml_byte(a, AML_BUFFER_OP);
	mark = a->len;
	aml_integer(a, len);
	aml_bytes(a, data, len);
	aml_end(a, mark);
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN_OP);
}

/* ---- resource descriptors ---- */

/* §6.4.2.5 I/O Port Descriptor: decodes 16-bit addresses. */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	aml_byte(a, 0x47);
	aml_byte(a, 0x01);
	aml_le(a, min, 2);
	aml_le(a, max, 2);
	aml_byte(a, align);
	aml_byte(a, len);
}

/* §6.4.2.1 IRQ Descriptor, 2-byte form: edge-triggered, active high. */
void aml_res_irq_noflags(struct aml *a, uint16_t mask)
{
	aml_byte(a, 0x22);
	aml_le(a, mask, 2);
}

/* §6.4.3.4 32-Bit Fixed Memory Range Descriptor. */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable)
{
	aml_byte(a, 0x86);
	aml_le(a, 9, 2);
	aml_byte(a, writable ? 1 : 0);
	aml_le(a, base, 4);
	aml_le(a, len, 4);
}

/* General flags for a bridge window: producer, min and max fixed, positive decode. */
#define AML_ADDR_GFLAGS_WINDOW 0x0c
#define AML_ADDR_TYPE_MEM 0
#define AML_ADDR_TYPE_IO  1
#define AML_ADDR_TYPE_BUS 2

/* §6.4.3.5.3 Word Address Space Descriptor. */
static void aml_res_word(struct aml *a, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
	aml_byte(a, 0x88);
	aml_le(a, 13, 2);
	aml_byte(a, type);
	aml_byte(a, AML_ADDR_GFLAGS_WINDOW);
	aml_byte(a, tflags);
	aml_le(a, 0, 2);                       /* granularity */
	aml_le(a, min, 2);
	aml_le(a, max, 2);
	aml_le(a, 0, 2);                       /* translation offset */
	aml_le(a, (uint32_t)max - min + 1, 2); /* length */
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
	if (max < min)
		a->failed = true;
	aml_res_word(a, AML_ADDR_TYPE_BUS, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	if (max < min)
		a->failed = true;
	/* Type-specific flags 3: EntireRange (ISA and non-ISA ports). */
	aml_res_word(a, AML_ADDR_TYPE_IO, 0x03, min, max);
}

/* §6.4.3.5.2 DWord Address Space Descriptor (memory). Flags: bit 0 RW,
 * bits 1-2 cacheability (0 non-cacheable, 1 cacheable). */
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, bool cacheable)
{
	if (max < min)
		a->failed = true;
	aml_byte(a, 0x87);
	aml_le(a, 23, 2);
	aml_byte(a, AML_ADDR_TYPE_MEM);
	aml_byte(a, AML_ADDR_GFLAGS_WINDOW);
	aml_byte(a, cacheable ? 0x03 : 0x01);
	aml_le(a, 0, 4);
	aml_le(a, min, 4);
	aml_le(a, max, 4);
	aml_le(a, 0, 4);
	aml_le(a, (uint64_t)max - min + 1, 4);
}

/* §6.4.3.5.1 QWord Address Space Descriptor (memory); 3 in bits 1-2 = prefetchable. */
void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, bool prefetchable)
{
	if (max < min)
		a->failed = true;
	aml_byte(a, 0x8a);
	aml_le(a, 43, 2);
	aml_byte(a, AML_ADDR_TYPE_MEM);
	aml_byte(a, AML_ADDR_GFLAGS_WINDOW);
	aml_byte(a, prefetchable ? 0x07 : 0x01);
	aml_le(a, 0, 8);
	aml_le(a, min, 8);
	aml_le(a, max, 8);
	aml_le(a, 0, 8);
	aml_le(a, max - min + 1, 8);
}

/* §6.4.2.9 End Tag. */
void aml_res_end(struct aml *a)
{
	aml_byte(a, 0x79);
	aml_byte(a, 0x00);
}
