/* Migration hooks of the API server for its embedders (vmm run --incoming). */
#ifndef API_ACTIONS_MIGRATION_H
#define API_ACTIONS_MIGRATION_H

#include <stdbool.h>

struct api_server;

/* Whether a client has been shown the final status of the last outgoing
 * migration: a VMM whose VM migrated away waits for that (briefly) before it
 * exits, so `vmm migrate` and API users learn the outcome. */
bool api_server_migration_reported(struct api_server *srv);

#endif
