/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * /etc/bootbank/system.conf, loaded with libinih. Every key is in one table (bk-config.c,
 * documented in docs/configuration.md); an unknown section or key, a bad value or a syntax
 * error fails the load with one message "'FILE':LINE: ..." and -EINVAL.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bk-err.h"

#define BK_CONFIG_NAME	   "system.conf"
#define BK_CONFIG_MAX_SIZE (64 * 1024)

struct bk_config {
	/* [system] */
	char *compatible; /* images must carry this compatible string */
	char *bootloader; /* boot state backend: file, grub, uboot, systemd-boot, custom */
	/* [keyring] */
	char *keyring;	 /* PEM file or hashed directory of trusted CA certificates */
	bool check_time; /* check certificate validity against the clock */
	/* [depot] */
	char *depot; /* directory of verified bundles */
	/* [disk] */
	char *disk;   /* whole disk holding the banks (optional) */
	char *bank_a; /* bank A device (optional: found by partition name otherwise) */
	char *bank_b;
	char *boot; /* boot partition device (optional) */
	/* [boot] */
	uint64_t tries;	      /* tries given to an activated bank */
	char *custom_backend; /* executable of the custom backend */
	/* [livepatch] */
	uint64_t hook_timeout_sec;
	uint64_t freeze_timeout_ms;
	uint64_t freeze_batch; /* workloads freezing at once during a switch; 0: twice the CPUs */
	/* [fetch]: stage and depot import from a URL (docs/stage-url.md) */
	char *fetch_ca_file;	       /* PEM CA bundle for https; NULL: the system's CAs */
	char *fetch_client_cert;       /* PEM client certificate; NULL: none */
	char *fetch_client_key;	       /* its key; NULL: in the certificate's file */
	char *fetch_bearer_token_file; /* file holding a bearer token; NULL: none */
	uint64_t fetch_connect_timeout_sec;
	uint64_t fetch_timeout_sec; /* a transfer below 1 KiB/s for this long fails */
	uint64_t fetch_retries;
	uint64_t fetch_retry_delay_ms;
	/* [remediation] */
	char *live_patch_mode; /* default live-patch mode of a desired image: disable|auto|enforce
				*/
};

/* Fill defaults (also what an absent file yields). Returns 0 or -ENOMEM. */
int bk_config_init(struct bk_config *c);

/* Free every string; the struct may be re-initialised. */
void bk_config_release(struct bk_config *c);

/*
 * Load (dfd, name) on top of the defaults in *c (which must be initialised). path is the name
 * used in messages. Returns 0; -ENOENT when the file does not exist (c unchanged); -EINVAL with
 * "'path':LINE: what" for unknown keys, bad values and syntax errors; other -errno for I/O.
 */
int bk_config_load_at(struct bk_config *c, int dfd, const char *name, const char *path,
		      struct bk_err *err);

/* The same from a string (fuzzing and tests). */
int bk_config_load_string(struct bk_config *c, const char *text, const char *path,
			  struct bk_err *err);
