/* A small AML byte emitter (ACPI 6.4 §20.2 "AML Grammar Definition") for
 * the DSDT, plus ACPI resource descriptors (§6.4) for _CRS buffers.
 *
 * Objects with a PkgLength (Scope, Device, Method, Package, Buffer) are
 * written as begin/end pairs: begin returns a mark, end inserts the PkgLength
 * in front of the contents once their size is known. The buffer grows on the
 * heap; an allocation failure or an invalid argument sets `failed` and later
 * calls do nothing, so callers check once at the end with aml_ok(). */
#ifndef VMM_ACPI_AML_H
#define VMM_ACPI_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t len, cap;
	bool failed;
};

/* AML opcodes used here (§20.2.x). */
#define AML_ZERO_OP         0x00
#define AML_ONE_OP          0x01
#define AML_NAME_OP         0x08
#define AML_BYTE_PREFIX     0x0a
#define AML_WORD_PREFIX     0x0b
#define AML_DWORD_PREFIX    0x0c
#define AML_STRING_PREFIX   0x0d
#define AML_QWORD_PREFIX    0x0e
#define AML_SCOPE_OP        0x10
#define AML_BUFFER_OP       0x11
#define AML_PACKAGE_OP      0x12
#define AML_METHOD_OP       0x14
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX   0x5b
#define AML_ROOT_CHAR       0x5c
#define AML_PARENT_CHAR     0x5e
#define AML_DEVICE_OP       0x82   /* after AML_EXT_OP_PREFIX */
#define AML_RETURN_OP       0xa4
#define AML_ONES_OP         0xff

#define AML_PKGLEN_MAX      0x0fffffffu   /* 28 bits */

void aml_init(struct aml *a);
void aml_free(struct aml *a);
static inline bool aml_ok(const struct aml *a) { return !a->failed; }

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *data, size_t len);

/* Encode a PkgLength for @content bytes that follow it (the encoding counts
 * its own bytes). Returns 1..4 bytes written to @out, or 0 if too large. */
unsigned aml_pkglen_encode(uint8_t out[4], size_t content);

/* NameString: "\\_SB_.PCI0", "_S5_", "^FOO"; segments shorter than four
 * characters are padded with '_'. Invalid names set failed. */
void aml_name_string(struct aml *a, const char *path);

/* Smallest encoding: ZeroOp, OneOp, OnesOp, Byte/Word/DWord/QWord prefix. */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EisaId("PNP0A03") as a DWord integer (§19.6.35 compressed EISA id). */
void aml_eisaid(struct aml *a, const char *id);
/* Returns the 32-bit compressed EISA id, or 0 for a malformed id. */
uint32_t aml_eisaid_value(const char *id);

/* Name(path, <value the caller emits next>). */
void aml_name(struct aml *a, const char *path);

size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *path);
size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
size_t aml_package_begin(struct aml *a, uint8_t nelems);
/* Close any of the above: inserts the PkgLength at @mark. */
void aml_end(struct aml *a, size_t mark);

/* Buffer(){ data } with the size as an integer. */
void aml_buffer(struct aml *a, const void *data, size_t len);
void aml_return(struct aml *a);

/* Resource descriptors (§6.4.2 small, §6.4.3 large) appended to @a. */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, uint16_t mask);
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable);
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, bool cacheable);
void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, bool prefetchable);
/* End tag, checksum 0 ("treated as if the checksum operation succeeded"). */
void aml_res_end(struct aml *a);

#endif
