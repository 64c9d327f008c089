#include "vmm/eventloop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/log.h"

struct evl_handler {
	int fd;
	evl_fd_cb cb;
	void *opaque;
	struct evl_handler *next;
	bool dead;                  /* removed while the loop may still hold a pointer */
};

#define EVL_MAX_EVENTS 32

int evl_init(struct event_loop *loop)
{
	memset(loop, 0, sizeof(*loop));
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wake_fd < 0) {
		int err = -errno;

		close(loop->epfd);
		return err;
	}
	pthread_mutex_init(&loop->lock, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0)
		return -errno;
	return 0;
}

static void evl_wake(struct event_loop *loop)
{
	uint64_t one = 1;

	if (write(loop->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("eventloop", "wake: %s", strerror_safe(errno));
}

/* Run every posted call; the caller holds loop->lock. */
static void evl_run_calls_locked(struct event_loop *loop)
{
	while (loop->calls) {
		struct evl_call *c = loop->calls;

		loop->calls = c->next;
		pthread_mutex_unlock(&loop->lock);
		c->result = c->fn(c->arg);
		pthread_mutex_lock(&loop->lock);
		c->done = true;
		pthread_cond_signal(&c->cond);
	}
}

static void evl_reap_dead_locked(struct event_loop *loop)
{
	struct evl_handler **pp = &loop->handlers;

	while (*pp) {
		struct evl_handler *h = *pp;

		if (h->dead) {
			*pp = h->next;
			free(h);
		} else {
			pp = &h->next;
		}
	}
}

static void *evl_thread(void *arg)
{
	struct event_loop *loop = arg;
	struct epoll_event events[EVL_MAX_EVENTS];

	/* On ourselves it is one prctl(); from the creator it is an open and a
	 * write of /proc/self/task/TID/comm (~50 us here, in restore downtime). */
	pthread_setname_np(pthread_self(), loop->name);
	for (;;) {
		int n = epoll_wait(loop->epfd, events, EVL_MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("eventloop", "epoll_wait: %s", strerror_safe(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct evl_handler *h = events[i].data.ptr;

			if (!h) {
				uint64_t v;

				if (read(loop->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("eventloop", "wake read: %s", strerror_safe(errno));
				continue;
			}
			if (!h->dead)
				h->cb(h->opaque, events[i].events);
		}
		pthread_mutex_lock(&loop->lock);
		evl_run_calls_locked(loop);
		evl_reap_dead_locked(loop);
		if (loop->stop) {
			pthread_mutex_unlock(&loop->lock);
			break;
		}
		pthread_mutex_unlock(&loop->lock);
	}
	return NULL;
}

int evl_start(struct event_loop *loop, const char *name)
{
	int ret;

	snprintf(loop->name, sizeof(loop->name), "%s", name);
	ret = pthread_create(&loop->thread, NULL, evl_thread, loop);
	if (ret)
		return -ret;
	pthread_mutex_lock(&loop->lock);
	loop->running = true;
	pthread_mutex_unlock(&loop->lock);
	return 0;
}

void evl_stop(struct event_loop *loop)
{
	pthread_mutex_lock(&loop->lock);
	if (!loop->running) {
		pthread_mutex_unlock(&loop->lock);
		return;
	}
	loop->stop = true;
	pthread_mutex_unlock(&loop->lock);
	evl_wake(loop);
	pthread_join(loop->thread, NULL);
	pthread_mutex_lock(&loop->lock);
	loop->running = false;
	evl_run_calls_locked(loop);
	pthread_mutex_unlock(&loop->lock);
}

void evl_destroy(struct event_loop *loop)
{
	evl_stop(loop);
	while (loop->handlers) {
		struct evl_handler *h = loop->handlers;

		loop->handlers = h->next;
		free(h);
	}
	if (loop->epfd > 0)
		close(loop->epfd);
	if (loop->wake_fd > 0)
		close(loop->wake_fd);
	pthread_mutex_destroy(&loop->lock);
	loop->epfd = loop->wake_fd = -1;
}

int evl_add_fd(struct event_loop *loop, int fd, uint32_t events, evl_fd_cb cb, void *opaque)
{
	struct evl_handler *h = calloc(1, sizeof(*h));
	struct epoll_event ev = { .events = events };

	if (!h)
		return -ENOMEM;
	h->fd = fd;
	h->cb = cb;
	h->opaque = opaque;
	ev.data.ptr = h;
	pthread_mutex_lock(&loop->lock);
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		pthread_mutex_unlock(&loop->lock);
		free(h);
		return err;
	}
	h->next = loop->handlers;
	loop->handlers = h;
	pthread_mutex_unlock(&loop->lock);
	return 0;
}

static struct evl_handler *evl_find_locked(struct event_loop *loop, int fd)
{
	for (struct evl_handler *h = loop->handlers; h; h = h->next)
		if (h->fd == fd && !h->dead)
			return h;
	return NULL;
}

int evl_mod_fd(struct event_loop *loop, int fd, uint32_t events)
{
	struct evl_handler *h;
	int ret = 0;

	pthread_mutex_lock(&loop->lock);
	h = evl_find_locked(loop, fd);
	if (!h) {
		ret = -ENOENT;
	} else {
		struct epoll_event ev = { .events = events, .data.ptr = h };

		if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&loop->lock);
	return ret;
}

int evl_del_fd(struct event_loop *loop, int fd)
{
	struct evl_handler *h;
	int ret = 0;

	pthread_mutex_lock(&loop->lock);
	h = evl_find_locked(loop, fd);
	if (!h) {
		ret = -ENOENT;
	} else {
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
		/* The loop may be between epoll_wait and the callback: free later. */
		h->dead = true;
		if (!loop->running)
			evl_reap_dead_locked(loop);
	}
	pthread_mutex_unlock(&loop->lock);
	return ret;
}

bool evl_on_loop_thread(const struct event_loop *loop)
{
	return loop->running && pthread_equal(pthread_self(), loop->thread);
}

void evl_post(struct event_loop *loop, struct evl_call *c, int (*fn)(void *arg), void *arg)
{
	*c = (struct evl_call){ .fn = fn, .arg = arg };
	pthread_mutex_lock(&loop->lock);
	if (!loop->running || evl_on_loop_thread(loop)) {
		pthread_mutex_unlock(&loop->lock);
		c->result = fn(arg);
		c->done = c->inline_done = true;
		return;
	}
	pthread_cond_init(&c->cond, NULL);
	/* FIFO: calls run in the order they were posted. */
	struct evl_call **tail = &loop->calls;
	while (*tail)
		tail = &(*tail)->next;
	*tail = c;
	pthread_mutex_unlock(&loop->lock);
	evl_wake(loop);
}

int evl_wait(struct event_loop *loop, struct evl_call *c)
{
	if (c->inline_done)
		return c->result;
	pthread_mutex_lock(&loop->lock);
	while (!c->done)
		pthread_cond_wait(&c->cond, &loop->lock);
	pthread_mutex_unlock(&loop->lock);
	pthread_cond_destroy(&c->cond);
	return c->result;
}

int evl_call(struct event_loop *loop, int (*fn)(void *arg), void *arg)
{
	struct evl_call c;

	evl_post(loop, &c, fn, arg);
	return evl_wait(loop, &c);
}
