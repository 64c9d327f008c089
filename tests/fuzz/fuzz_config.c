/* libFuzzer target for the VM configuration parser that `vmm run --config`
 * and the API's vm.create share (api/config_json.c): arbitrary bytes as a
 * vm.create document. Whatever the input, nothing may crash or leak; a
 * refusal must say why (a non-empty message); and a document it accepts must
 * survive a round trip: serialized with config_to_json(), it parses again to
 * a configuration that serializes to the same text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/config_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *config_text(const struct vm_config *cfg)
{
	cJSON *j = config_to_json(cfg);
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;

	cJSON_Delete(j);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config cfg, again;
	char err[512] = "", *text, *text2;

	config_init(&cfg);
	if (config_from_json(&cfg, (const char *)data, size, err, sizeof(err))) {
		if (!err[0])
			abort();   /* a refusal without a reason */
		config_free(&cfg);
		return 0;
	}
	text = config_text(&cfg);
	if (!text)
		abort();
	config_init(&again);
	if (config_from_json(&again, text, strlen(text), err, sizeof(err))) {
		fprintf(stderr, "fuzz_config: own output refused: %s\n%s\n", err, text);
		abort();
	}
	text2 = config_text(&again);
	if (!text2 || strcmp(text, text2)) {
		fprintf(stderr, "fuzz_config: round trip differs:\n%s\n%s\n", text, text2 ? text2 : "(null)");
		abort();
	}
	free(text);
	free(text2);
	config_free(&cfg);
	config_free(&again);
	return 0;
}
