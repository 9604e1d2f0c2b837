/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Job objects (docs/dbus-api.md, "Jobs"): a forked child runs one operation (bankd-child.c)
 * and writes JSON Lines to a pipe; the event loop reads them into the job's properties and
 * StepFinished signals, and the child's end into Completed. The loop never waits for a child:
 * the pipe and the child are event sources.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bankd.h"
#include "bk-err.h"
#include "bk-json.h"
#include "bk-log.h"

/* A line from a child longer than this is a broken child: it is cut off. */
#define LINE_MAX_BYTES (256 * 1024)

static int set_str(char **p, const char *s)
{
	char *c = strdup(s ? s : "");

	if (!c)
		return -ENOMEM;
	free(*p);
	*p = c;
	return 0;
}

static struct bankd_job *job_free(struct bankd_job *j)
{
	if (!j)
		return NULL;
	j->io_source = sd_event_source_disable_unref(j->io_source);
	j->child_source = sd_event_source_disable_unref(j->child_source);
	j->linger_source = sd_event_source_disable_unref(j->linger_source);
	j->vtable_slot = sd_bus_slot_unref(j->vtable_slot);
	j->call = sd_bus_message_unref(j->call);
	if (j->pipe_fd >= 0)
		(void) close(j->pipe_fd);
	free(j->buf);
	free(j->state);
	free(j->step);
	free(j->task);
	free(j->error_name);
	free(j->message);
	free(j->result_json);
	free(j);
	return NULL;
}

static void job_forget(struct bankd_job *j)
{
	struct bankd_manager *m = j->manager;

	for (size_t i = 0; i < m->n_jobs; i++)
		if (m->jobs[i] == j) {
			m->jobs[i] = m->jobs[--m->n_jobs];
			break;
		}
	if (m->current == j)
		m->current = NULL;
	job_free(j);
}

/* ---- the vtable ---------------------------------------------------------------------------- */

static int prop_progress(sd_bus *bus, const char *path, const char *interface, const char *property,
			 sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	struct bankd_job *j = userdata;

	return sd_bus_message_append(reply, "(utt)", j->percent, j->done, j->total);
}

static int prop_string(sd_bus *bus, const char *path, const char *interface, const char *property,
		       sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	struct bankd_job *j = userdata;
	const char *v = NULL;

	if (strcmp(property, "State") == 0)
		v = j->state;
	else if (strcmp(property, "Step") == 0)
		v = j->step;
	else if (strcmp(property, "Task") == 0)
		v = j->task;
	else if (strcmp(property, "Operation") == 0)
		v = bankd_op_to_string(j->op);
	else if (strcmp(property, "ErrorName") == 0)
		v = j->error_name;
	else if (strcmp(property, "Message") == 0)
		v = j->message;
	else if (strcmp(property, "Result") == 0)
		v = j->result_json;
	return sd_bus_message_append(reply, "s", v ? v : "");
}

static const sd_bus_vtable job_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Id", "u", NULL, offsetof(struct bankd_job, id),
			SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Operation", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("State", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Step", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Task", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Progress", "(utt)", prop_progress, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("ExitCode", "u", NULL, offsetof(struct bankd_job, exit_code),
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("ErrorName", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Message", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Result", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_SIGNAL_WITH_NAMES("StepFinished", "ssstts",
				 SD_BUS_PARAM(task) SD_BUS_PARAM(step) SD_BUS_PARAM(result)
					 SD_BUS_PARAM(start_usec) SD_BUS_PARAM(duration_usec)
						 SD_BUS_PARAM(message),
				 0),
	SD_BUS_SIGNAL_WITH_NAMES("Completed", "usss",
				 SD_BUS_PARAM(exit_code) SD_BUS_PARAM(error_name)
					 SD_BUS_PARAM(message) SD_BUS_PARAM(result),
				 0),
	SD_BUS_VTABLE_END,
};

/* ---- what the child writes ------------------------------------------------------------------ */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

static uint64_t ju64(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_uint64(v);
}

static void changed(struct bankd_job *j, const char *prop)
{
	(void) sd_bus_emit_properties_changed(j->manager->bus, j->path, BANKD_JOB_IFACE, prop,
					      NULL);
}

static void handle_line(struct bankd_job *j, const char *line, size_t len)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	const char *type;

	if (bk_json_parse(line, len, &o, NULL) < 0 || !json_object_is_type(o, json_type_object)) {
		bk_log(LOG_WARNING, "job %u: cannot parse a line of its child, ignoring", j->id);
		return;
	}
	type = jstr(o, "type");
	if (strcmp(type, "task") == 0) {
		(void) set_str(&j->task, jstr(o, "task"));
		changed(j, "Task");
	} else if (strcmp(type, "step") == 0) {
		bk_log(LOG_INFO, "job %u: %s: %s %s%s%s", j->id, bankd_op_to_string(j->op),
		       jstr(o, "step"), jstr(o, "result"), *jstr(o, "message") ? ": " : "",
		       jstr(o, "message"));
		(void) set_str(&j->step, jstr(o, "step"));
		changed(j, "Step");
		/* A single-step operation begins no task: its step names it. */
		if (j->task && !j->task[0] && *jstr(o, "task")) {
			(void) set_str(&j->task, jstr(o, "task"));
			changed(j, "Task");
		}
		(void) sd_bus_emit_signal(j->manager->bus, j->path, BANKD_JOB_IFACE, "StepFinished",
					  "ssstts", jstr(o, "task"), jstr(o, "step"),
					  jstr(o, "result"), ju64(o, "start_ns") / 1000,
					  ju64(o, "duration_ns") / 1000, jstr(o, "message"));
	} else if (strcmp(type, "step-begin") == 0) {
		/* Step: the step in progress from its start, until the next one starts. */
		(void) set_str(&j->step, jstr(o, "step"));
		changed(j, "Step");
	} else if (strcmp(type, "progress") == 0) {
		uint64_t done = ju64(o, "done"), total = ju64(o, "total");

		if (done == j->done && total == j->total)
			return;
		j->done = done;
		j->total = total;
		j->percent = total ? (uint32_t) (done * 100 / total) : 0;
		changed(j, "Progress");
	} else if (strcmp(type, "detail") == 0) {
		bk_log(LOG_INFO, "job %u:   %s", j->id, jstr(o, "text"));
	} else if (strcmp(type, "message") == 0) {
		bk_log((int) ju64(o, "level"), "job %u: %s", j->id, jstr(o, "text"));
	} else if (strcmp(type, "result") == 0) {
		struct json_object *r = NULL;

		j->has_result = true;
		j->exit_code = (uint32_t) ju64(o, "exit_code");
		(void) set_str(&j->error_name, jstr(o, "error"));
		(void) set_str(&j->message, jstr(o, "message"));
		if (json_object_object_get_ex(o, "result", &r) && r)
			(void) set_str(&j->result_json,
				       json_object_to_json_string_ext(
					       r, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
	}
}

/* Read what the pipe has; 0 at EOF, 1 when more may come, <0 on error. */
static int read_pipe(struct bankd_job *j)
{
	char chunk[16384];

	for (;;) {
		ssize_t n = read(j->pipe_fd, chunk, sizeof(chunk));
		char *nl, *p;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 1;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		p = realloc(j->buf, j->buf_len + (size_t) n + 1);
		if (!p)
			return -ENOMEM;
		j->buf = p;
		memcpy(j->buf + j->buf_len, chunk, (size_t) n);
		j->buf_len += (size_t) n;
		while ((nl = memchr(j->buf, '\n', j->buf_len))) {
			size_t len = (size_t) (nl - j->buf);

			handle_line(j, j->buf, len);
			memmove(j->buf, nl + 1, j->buf_len - len - 1);
			j->buf_len -= len + 1;
		}
		if (j->buf_len > LINE_MAX_BYTES)
			j->buf_len = 0;
	}
}

static int on_pipe(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct bankd_job *j = userdata;
	int r;

	r = read_pipe(j);
	if (r <= 0)
		j->io_source = sd_event_source_disable_unref(j->io_source);
	return 0;
}

static int on_linger_end(sd_event_source *s, uint64_t usec, void *userdata)
{
	job_forget(userdata);
	return 0;
}

/* The child ended: read what is left, settle the result, answer or signal it. */
static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct bankd_job *j = userdata;
	struct bankd_manager *m = j->manager;
	const char *err_name;
	char msg[128];

	j->pid = 0;
	if (j->io_source) {
		(void) read_pipe(j);
		j->io_source = sd_event_source_disable_unref(j->io_source);
	}
	if (!j->has_result || si->si_code != CLD_EXITED) {
		/* Killed or crashed before it could say: a failure like a killed bankctl's. */
		if (si->si_code == CLD_EXITED)
			(void) snprintf(msg, sizeof(msg), "the operation ended with exit code %d",
					si->si_status);
		else
			(void) snprintf(msg, sizeof(msg),
					"the operation was killed by signal %d (%s)", si->si_status,
					strsignal(si->si_status));
		j->exit_code = si->si_code == CLD_EXITED && si->si_status > 0 ?
				       (uint32_t) si->si_status :
				       BK_EXIT_FAILURE;
		(void) set_str(&j->error_name, bk_exit_code_to_dbus_error((int) j->exit_code));
		(void) set_str(&j->message, msg);
	}
	err_name = j->error_name && j->error_name[0] ? j->error_name : NULL;
	(void) set_str(&j->state, j->exit_code == 0 ? "completed" : "failed");
	bk_log(j->exit_code == 0 ? LOG_INFO : LOG_ERR, "job %u: %s %s%s%s", j->id,
	       bankd_op_to_string(j->op), j->state, j->message && j->message[0] ? ": " : "",
	       j->message ? j->message : "");

	{
		(void) sd_bus_emit_properties_changed(m->bus, j->path, BANKD_JOB_IFACE, "State",
						      "ExitCode", "ErrorName", "Message", "Result",
						      NULL);
		(void) sd_bus_emit_signal(m->bus, j->path, BANKD_JOB_IFACE, "Completed", "usss",
					  j->exit_code, err_name ? err_name : "",
					  j->message ? j->message : "",
					  j->result_json ? j->result_json : "");
	}
	if (j->call) {
		if (j->exit_code == 0)
			(void) sd_bus_reply_method_return(j->call, "s",
							  j->result_json ? j->result_json : "{}");
		else
			(void) sd_bus_reply_method_errorf(
				j->call, err_name ? err_name : "org.bootbank.Error.Failed", "%s",
				j->message && j->message[0] ? j->message : "failed");
		j->call = sd_bus_message_unref(j->call);
	}
	j->child_source = sd_event_source_disable_unref(j->child_source);
	if (m->current == j)
		m->current = NULL;
	bankd_manager_state_changed(m);

	/* A finished job stays on the bus a while for clients that look late. */
	if (!m->exiting &&
	    sd_event_add_time_relative(m->event, &j->linger_source, CLOCK_MONOTONIC,
				       BANKD_JOB_LINGER_USEC, 0, on_linger_end, j) >= 0)
		return 0;
	job_forget(j);
	return 0;
}

int bankd_job_start(struct bankd_manager *m, struct bankd_request *req, enum bankd_reply reply_mode,
		    sd_bus_message *call, struct bankd_job **ret, sd_bus_error *error)
{
	struct bankd_job *j, **jobs;
	int pfd[2];
	pid_t pid;
	int r;

	j = calloc(1, sizeof(*j));
	jobs = reallocarray(m->jobs, m->n_jobs + 1, sizeof(*m->jobs));
	if (!j || !jobs) {
		free(j);
		bankd_request_release(req);
		return sd_bus_error_set_errno(error, -ENOMEM);
	}
	m->jobs = jobs;
	j->manager = m;
	j->pipe_fd = -EBADF;
	j->op = req->op;
	j->id = ++m->next_job_id;
	j->reply_mode = reply_mode;
	(void) snprintf(j->path, sizeof(j->path), BANKD_JOB_PREFIX "/%u", j->id);
	if (set_str(&j->state, "running") < 0 || set_str(&j->step, "") < 0 ||
	    set_str(&j->task, "") < 0) {
		job_free(j);
		bankd_request_release(req);
		return sd_bus_error_set_errno(error, -ENOMEM);
	}

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		r = -errno;
		job_free(j);
		bankd_request_release(req);
		return sd_bus_error_set_errnof(error, r, "cannot make a pipe: %m");
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		(void) close(pfd[0]);
		(void) close(pfd[1]);
		job_free(j);
		bankd_request_release(req);
		return sd_bus_error_set_errnof(error, r, "cannot fork: %m");
	}
	if (pid == 0) {
		(void) close(pfd[0]);
		bankd_child_main(m->root, m->config, req, pfd[1]);
	}
	(void) close(pfd[1]);
	bankd_request_release(req);
	j->pid = pid;
	j->pipe_fd = pfd[0];
	m->jobs[m->n_jobs++] = j;

	r = fcntl(j->pipe_fd, F_SETFL, O_NONBLOCK);
	if (r >= 0)
		r = sd_event_add_io(m->event, &j->io_source, j->pipe_fd, EPOLLIN, on_pipe, j);
	if (r >= 0)
		r = sd_event_add_child(m->event, &j->child_source, pid, WEXITED, on_child, j);
	/* Lines before the end: the pipe is read before the child's exit is handled. */
	if (r >= 0)
		r = sd_event_source_set_priority(j->child_source, SD_EVENT_PRIORITY_NORMAL + 1);
	if (r >= 0)
		r = sd_bus_add_object_vtable(m->bus, &j->vtable_slot, j->path, BANKD_JOB_IFACE,
					     job_vtable, j);
	if (r < 0) {
		/* Cannot watch it: end it now, as a killed operation. */
		(void) kill(pid, SIGKILL);
		(void) waitpid(pid, NULL, 0);
		j->pid = 0;
		job_forget(j);
		return sd_bus_error_set_errnof(error, r, "cannot watch the operation: %m");
	}
	if (call)
		j->call = sd_bus_message_ref(call);
	m->current = j;
	bk_log(LOG_INFO, "job %u: %s started (pid %d)", j->id, bankd_op_to_string(j->op),
	       (int) pid);
	bankd_manager_state_changed(m);
	*ret = j;
	return 0;
}

void bankd_jobs_kill_all(struct bankd_manager *m)
{
	while (m->n_jobs > 0) {
		struct bankd_job *j = m->jobs[m->n_jobs - 1];

		if (j->pid > 0) {
			/* What a killed bankctl leaves: the next run's recovery handles it. */
			bk_log(LOG_WARNING, "job %u: %s killed (shutting down)", j->id,
			       bankd_op_to_string(j->op));
			(void) kill(j->pid, SIGKILL);
			(void) waitpid(j->pid, NULL, 0);
			j->pid = 0;
		}
		if (j->call) {
			(void) sd_bus_reply_method_errorf(j->call, "org.bootbank.Error.Failed",
							  "bankd is shutting down");
			j->call = sd_bus_message_unref(j->call);
		}
		job_forget(j);
	}
	free(m->jobs);
	m->jobs = NULL;
}
