/* The device back-end event loop: one thread per VM, epoll-driven. Back ends
 * (TAP, ioeventfd, console input, timers) register fds; other threads (the API
 * server) run work on the loop thread with evl_call(), which waits for it. */
#ifndef VMM_EVENTLOOP_H
#define VMM_EVENTLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef void (*evl_fd_cb)(void *opaque, uint32_t events);

struct evl_handler;

/* A call posted to the loop (evl_post): the caller owns it until evl_wait. */
struct evl_call {
	int (*fn)(void *arg);
	void *arg;
	int result;
	bool done;
	bool inline_done;            /* the loop was not running: ran in evl_post */
	pthread_cond_t cond;
	struct evl_call *next;
};

struct event_loop {
	int epfd;
	int wake_fd;                 /* eventfd: posted calls and stop */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	struct evl_call *calls;      /* queue of posted calls */
	bool stop;
	struct evl_handler *handlers;
	char name[16];               /* thread name, set by the thread itself */
};

int evl_init(struct event_loop *loop);
/* Start the loop thread. */
int evl_start(struct event_loop *loop, const char *name);
/* Stop and join the loop thread; pending calls are run first. */
void evl_stop(struct event_loop *loop);
void evl_destroy(struct event_loop *loop);

/* @events are EPOLLIN/EPOLLOUT...; the callback runs on the loop thread. */
int evl_add_fd(struct event_loop *loop, int fd, uint32_t events, evl_fd_cb cb, void *opaque);
int evl_mod_fd(struct event_loop *loop, int fd, uint32_t events);
int evl_del_fd(struct event_loop *loop, int fd);

/* Run @fn(@arg) on the loop thread and wait for it to return its int result.
 * If the loop is not running, runs @fn directly in the caller. */
int evl_call(struct event_loop *loop, int (*fn)(void *arg), void *arg);
/* evl_call in two halves, so the caller works while the loop runs @fn:
 * evl_post queues it (or runs it at once if the loop is not running or this
 * is the loop thread), evl_wait returns its result. Every evl_post needs its
 * evl_wait; @c must stay alive in between. */
void evl_post(struct event_loop *loop, struct evl_call *c, int (*fn)(void *arg), void *arg);
int evl_wait(struct event_loop *loop, struct evl_call *c);
bool evl_on_loop_thread(const struct event_loop *loop);

#endif
