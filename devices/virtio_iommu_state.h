/* The IOMMU's translation state in the state tree (migration/state.h):
 *
 *   <node>                 bypass = <0|1>
 *     endpoint@<id hex>    version, id, attached, domain
 *     domain@<id>          version, id, bypass
 *       mapping@<iova hex> version, iova, size, gpa, flags
 *
 * size 0 stands for 2^64 (a mapping of the whole 64-bit space). Loading
 * validates everything by replaying ATTACH and MAP into a scratch IOMMU with
 * the same parameters and endpoints (so every spec rule applies: alignment,
 * overlap, ranges, reserved regions), then commits it with iommu_adopt():
 * nothing is half-applied, and endpoint handles held by devices stay valid. */
#ifndef DEVICES_VIRTIO_IOMMU_STATE_H
#define DEVICES_VIRTIO_IOMMU_STATE_H

#include "devices/iommu_map.h"
#include "migration/state.h"

#define IOMMU_STATE_VERSION 1

int iommu_state_save(struct iommu *io, struct state_node *node);
int iommu_state_load(struct iommu *io, const struct state_node *node);

#endif
