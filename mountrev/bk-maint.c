/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-json.h"
#include "bk-maint.h"

static const char *const phase_names[_BK_MAINT_PHASE_MAX] = {
	[BK_MAINT_PHASE_STAGING] = "staging",
	[BK_MAINT_PHASE_PREPARING] = "preparing",
	[BK_MAINT_PHASE_SWITCHING] = "switching",
	[BK_MAINT_PHASE_COMMITTED] = "committed",
};

const char *bk_maint_phase_to_string(enum bk_maint_phase p)
{
	if (p < 0 || p >= _BK_MAINT_PHASE_MAX)
		return NULL;
	return phase_names[p];
}

enum bk_maint_phase bk_maint_phase_from_string(const char *s)
{
	for (int i = 0; i < _BK_MAINT_PHASE_MAX; i++)
		if (s && strcmp(s, phase_names[i]) == 0)
			return (enum bk_maint_phase) i;
	return _BK_MAINT_PHASE_INVALID;
}

void bk_maint_release(struct bk_maint *m)
{
	free(m->operation);
	free(m->reason);
	free(m->from);
	free(m->to);
	free(m->boot_id);
	free(m->bank);
	m->operation = m->reason = m->from = m->to = m->boot_id = m->bank = NULL;
	m->bank_generation = m->bank_generation_before = 0;
}

int bk_maint_set(int state_dfd, const struct bk_maint *m, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	const char *phase = bk_maint_phase_to_string(m->phase);

	if (!o)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (!phase || !m->operation || !m->to)
		return bk_err_set(err, -EINVAL, "incomplete maintenance record");
	if (bk_json_add_string(o, "operation", m->operation) < 0 ||
	    bk_json_add_string(o, "reason", m->reason ? m->reason : "") < 0 ||
	    (m->from && bk_json_add_string(o, "from", m->from) < 0) ||
	    bk_json_add_string(o, "to", m->to) < 0 || bk_json_add_string(o, "phase", phase) < 0 ||
	    bk_json_add_u64(o, "started", m->started) < 0 ||
	    bk_json_add_u64(o, "pid", m->pid) < 0 ||
	    (m->boot_id && bk_json_add_string(o, "boot_id", m->boot_id) < 0) ||
	    (m->bank &&
	     (bk_json_add_string(o, "bank", m->bank) < 0 ||
	      bk_json_add_u64(o, "bank_generation", m->bank_generation) < 0 ||
	      bk_json_add_u64(o, "bank_generation_before", m->bank_generation_before) < 0)))
		return bk_err_set(err, -ENOMEM, "out of memory");
	return bk_json_write_atomic_at(state_dfd, BK_MAINT_FILE, o, 0644, 0, err);
}

static int dup_field(struct json_object *o, const char *key, bool required, char **ret,
		     struct bk_err *err)
{
	const char *s = NULL;
	int r;

	r = bk_json_get_string(o, key, required, &s, err);
	if (r < 0)
		return r;
	if (!s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
}

int bk_maint_get(int state_dfd, struct bk_maint *ret, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_maint m = { 0 };
	const char *phase = NULL;
	int r;

	r = bk_json_read_at(state_dfd, BK_MAINT_FILE, BK_MAINT_MAX_SIZE, &o, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r == -EINVAL || r == -EBADMSG ? bk_err_recode(err, -ENOEXEC) : r;
	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "'%s' is not a JSON object", BK_MAINT_FILE);
	r = dup_field(o, "operation", true, &m.operation, err);
	if (r >= 0)
		r = dup_field(o, "reason", false, &m.reason, err);
	if (r >= 0)
		r = dup_field(o, "from", false, &m.from, err);
	if (r >= 0)
		r = dup_field(o, "to", true, &m.to, err);
	if (r >= 0)
		r = dup_field(o, "boot_id", false, &m.boot_id, err);
	if (r >= 0)
		r = dup_field(o, "bank", false, &m.bank, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "bank_generation", false, UINT32_MAX, &m.bank_generation,
				    err);
	if (r >= 0)
		r = bk_json_get_u64(o, "bank_generation_before", false, UINT32_MAX,
				    &m.bank_generation_before, err);
	if (r >= 0)
		r = bk_json_get_string(o, "phase", true, &phase, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "started", false, UINT64_MAX, &m.started, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "pid", false, UINT32_MAX, &m.pid, err);
	if (r >= 0) {
		m.phase = bk_maint_phase_from_string(phase);
		if (m.phase < 0)
			r = bk_err_set(err, -EINVAL, "unknown phase '%s'", phase);
	}
	if (r < 0) {
		bk_maint_release(&m);
		(void) bk_err_prefix(err, "'%s'", BK_MAINT_FILE);
		return bk_err_recode(err, -ENOEXEC);
	}
	*ret = m;
	return 1;
}

int bk_maint_boot_id(char buf[37])
{
	_cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, 36);
	if (n < 0)
		return -errno;
	if (n != 36)
		return -EIO;
	buf[36] = '\0';
	return 0;
}

int bk_maint_clear(int state_dfd, struct bk_err *err)
{
	int r;

	if (unlinkat(state_dfd, BK_MAINT_FILE, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		return bk_err_set(err, -errno, "cannot remove '%s': %m", BK_MAINT_FILE);
	}
	r = bk_fsync_dir(state_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the directory of '%s': %s", BK_MAINT_FILE,
				  strerror(-r));
	return 0;
}

bool bk_maint_is_set(int state_dfd)
{
	struct stat st;

	return fstatat(state_dfd, BK_MAINT_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int bk_maint_check(int state_dfd, const char *what, struct bk_err *err)
{
	struct bk_maint m = { 0 };
	struct bk_err e = { 0 };
	char when[64] = "an unknown time";
	struct tm tm;
	time_t t;
	int r;

	if (!bk_maint_is_set(state_dfd))
		return 0;
	r = bk_maint_get(state_dfd, &m, &e);
	if (r <= 0)
		return bk_err_set(err, -EBUSY,
				  "busy: %s refused, partial maintenance mode is set ('%s' exists)",
				  what, BK_MAINT_FILE);
	t = (time_t) m.started;
	if (gmtime_r(&t, &tm))
		(void) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	r = bk_err_set(err, -EBUSY, "busy: %s refused, partial maintenance mode since %s (%s)",
		       what, when, m.reason ? m.reason : m.operation);
	bk_maint_release(&m);
	return r;
}
