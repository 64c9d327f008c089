/* unix_listen: the socket file appears only once it accepts connections, with
 * the mode asked for; live sockets and other files at the path are left alone,
 * stale sockets replaced. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/unix_listen.h"

static const struct unix_listen_opts opts = { .backlog = 4, .mode = 0600 };

struct dir {
	char path[64];
	char sock[80];
};

static void dir_make(struct dir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/vmm-ulisten-XXXXXX");
	cr_assert_not_null(mkdtemp(d->path));
	snprintf(d->sock, sizeof(d->sock), "%s/s", d->path);
}

static unsigned dir_entries(const struct dir *d)
{
	DIR *dh = opendir(d->path);
	struct dirent *e;
	unsigned n = 0;

	cr_assert_not_null(dh);
	while ((e = readdir(dh)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dh);
	return n;
}

static void dir_remove(struct dir *d)
{
	unlink(d->sock);
	cr_assert_eq(rmdir(d->path), 0, "%s not empty", d->path);
}

/* connect() to @path: 0, or the errno. */
static int try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
	close(fd);
	return r;
}

Test(unix_listen, listens_with_the_mode_asked_and_leaves_no_temporary_name)
{
	struct dir d;
	struct stat st;
	char err[256] = "";

	dir_make(&d);
	int fd = unix_listen(d.sock, &opts, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	cr_assert_eq(stat(d.sock, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert_eq(dir_entries(&d), 1, "a temporary socket name was left behind");
	cr_assert_eq(try_connect(d.sock), 0);
	close(fd);
	dir_remove(&d);
}

Test(unix_listen, other_files_are_not_replaced)
{
	struct dir d;
	char err[256] = "", buf[8] = "";

	dir_make(&d);
	int f = open(d.sock, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(f, 0);
	cr_assert_eq(write(f, "keep", 4), 4);
	close(f);
	cr_assert_eq(unix_listen(d.sock, &opts, err, sizeof(err)), -EEXIST);
	cr_assert(strstr(err, "is not a socket"), "%s", err);
	f = open(d.sock, O_RDONLY);
	cr_assert_eq(read(f, buf, sizeof(buf)), 4);
	close(f);
	cr_assert_str_eq(buf, "keep");
	cr_assert_eq(dir_entries(&d), 1);
	dir_remove(&d);
}

Test(unix_listen, a_live_socket_is_not_taken_over)
{
	struct dir d;
	char err[256] = "";

	dir_make(&d);
	int first = unix_listen(d.sock, &opts, err, sizeof(err));
	cr_assert_geq(first, 0, "%s", err);
	cr_assert_eq(unix_listen(d.sock, &opts, err, sizeof(err)), -EADDRINUSE);
	cr_assert(strstr(err, "another process is listening"), "%s", err);
	/* The first listener still owns the path. */
	cr_assert_eq(try_connect(d.sock), 0);
	int c = accept(first, NULL, NULL);
	cr_assert_geq(c, 0);
	close(c);
	close(first);
	dir_remove(&d);
}

Test(unix_listen, a_stale_socket_is_replaced)
{
	struct dir d;
	char err[256] = "";

	dir_make(&d);
	int dead = unix_listen(d.sock, &opts, err, sizeof(err));
	cr_assert_geq(dead, 0, "%s", err);
	close(dead);   /* the file stays: a process that died */
	cr_assert_eq(try_connect(d.sock), ECONNREFUSED);
	int fd = unix_listen(d.sock, &opts, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	cr_assert_eq(try_connect(d.sock), 0);
	close(fd);
	dir_remove(&d);
}

Test(unix_listen, too_long_a_path_is_refused)
{
	char path[200], err[256] = "";

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	cr_assert_eq(unix_listen(path, &opts, err, sizeof(err)), -ENAMETOOLONG);
	cr_assert(strstr(err, "longer than"), "%s", err);
}

struct racer {
	const char *path;
	atomic_bool go;
	int result;   /* the first connect() result other than ENOENT */
};

static void *race_connect(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->go))
		;
	do
		r->result = try_connect(r->path);
	while (r->result == ENOENT);
	return NULL;
}

/* A client that connects as soon as the file exists is never refused: with a
 * plain bind(); listen() it lands between the two often enough that a few
 * hundred rounds catch it (checked by binding directly). */
Test(unix_listen, the_file_appears_only_once_listening)
{
	struct dir d;
	char err[256] = "";

	dir_make(&d);
	for (unsigned round = 0; round < 300; round++) {
		struct racer r = { .path = d.sock };
		pthread_t t;

		cr_assert_eq(pthread_create(&t, NULL, race_connect, &r), 0);
		atomic_store(&r.go, true);
		int fd = unix_listen(d.sock, &opts, err, sizeof(err));
		cr_assert_geq(fd, 0, "%s", err);
		pthread_join(t, NULL);
		cr_assert_eq(r.result, 0, "round %u: connect() got %s", round, strerror(r.result));
		close(fd);
		unlink(d.sock);
	}
	dir_remove(&d);
}
