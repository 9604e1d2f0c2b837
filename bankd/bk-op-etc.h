/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The /etc carry-forward at stage time (docs/initramfs.md, "/etc"): the booted bank's writable
 * /etc layer on the data partition (ROOT/run/bootbank/data/etc/<BANK>/upper, made by the
 * initramfs-tools boot method) is copied into the layer of the bank just staged, and every
 * carried path whose version in the new image differs from the booted image's is a conflict
 * (the local version is kept and shadows the image's). A step of the stage operation.
 */
#pragma once

#include <stddef.h>

#include <json-c/json.h>

#include "bk-bank.h"
#include "bk-manifest.h"
#include "bk-op.h"

/* Where the initramfs puts the data partition's /etc layers, and the booted image's root. */
#define BK_OP_ETC_LAYERS_DIR BK_OP_RUN_DIR "/data/etc"
#define BK_OP_ETC_BOOTED_ETC BK_OP_RUN_DIR "/rootfs/etc"
/* Where the new image's rootfs is mounted (private namespace) for the comparison. */
#define BK_OP_ETC_NEW_ROOTFS BK_OP_RUN_DIR "/mnt/etc-carry"
/* How deep a layer is walked; deeper entries are an error (the copy must be whole). */
#define BK_OP_ETC_MAX_DEPTH 32

struct bk_op_etc_carry {
	bool done;	   /* the layer was carried (false: see skipped) */
	bool tried;	   /* there was a layer to carry (done false: the carry failed) */
	char skipped[512]; /* why not, when !done: the first boot carries it then */
	enum bk_bank_id from;
	size_t n_entries; /* files, links, whiteouts and directories copied */
	char **conflicts; /* "/etc/PATH", n_conflicts of them */
	size_t n_conflicts;
};

void bk_op_etc_carry_release(struct bk_op_etc_carry *c);

/*
 * Carry the layer of bank from into bank to's layer (replacing it), for the image m just
 * written into bank to from the verified bundle open at bundle_fd (its rootfs payload is
 * mounted read-only from the bundle at ROOT/BK_OP_ETC_NEW_ROOTFS for the comparison, in the
 * process's private namespace, and unmounted again). The new
 * layer is built beside the old one ("<TO>.new"), synced, and renamed in place with its image
 * file (the manifest digest, as hex) that the initramfs compares with bank.json: a layer
 * whose image matches is used as it is at the first boot. No layer of the booted bank (no
 * data partition layout under ROOT/run/bootbank, or a system not booted by the boot method):
 * 0 with c->done and c->tried false and c->skipped set. Returns 0 or -errno with err (c->tried
 * set); a partial new layer is removed.
 */
int bk_op_etc_carry(struct bk_op_ctx *ctx, enum bk_bank_id from, enum bk_bank_id to, int bundle_fd,
		    const struct bk_manifest *m, const struct bk_bank_record *rec,
		    struct bk_op_etc_carry *c, struct bk_err *err);

/* {"from", "entries", "conflicts": [...]} or {"skipped": why}. NULL on ENOMEM. */
struct json_object *bk_op_etc_carry_to_json(const struct bk_op_etc_carry *c);
