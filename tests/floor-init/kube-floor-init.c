/* The floor of the Kubernetes bring-up benchmark (`make bench`, k8s_bench):
 * an /init with nothing of Cairn in it that starts etcd, containerd, the
 * kubelet and, through the kubelet, the control plane's static Pods, from
 * the same payload with the same certificates, configs and flags as a Cairn
 * node (the bench copies them from one). What it costs to reach /readyz
 * and a Ready node here is what any system must pay on this machine; the
 * bench prints Cairn's figures against it.
 *
 * Disks: /dev/vda is the payload (squashfs), /dev/vdb the floor's tree
 * (squashfs: the copied files, ctr and its libc, and /floor's plan). The
 * root becomes an overlay of the tree with a tmpfs on top, not the
 * initramfs: runc cannot pivot_root out of a rootfs.
 *
 * /floor/plan is read line by line, fields separated by tabs:
 *   wait PATH          until PATH exists
 *   bg NAME ARGV...    start in the background (output to /var/log/floor)
 *   par NAME ARGV...   start in the background, joined by the next `join`
 *   join               until every `par` job has exited (each must succeed)
 *   mark TEXT          print "floor: TEXT at <seconds since boot>"
 * /floor/env holds the jobs' environment (KEY=VALUE lines), /floor/sysctls
 * "PATH VALUE" lines, /floor/net "ADDRESS NETMASK GATEWAY", /floor/hostname.
 * Built static by the bench (gcc -static -O2). Why C and not Rust: the floor
 * must not share code with Cairn's init, and this is all it does. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 64
#define MAX_ARGS 256
#define MAX_ENV 64

struct job {
	pid_t pid;
	char name[64];
	int joined;
};

static struct job jobs[MAX_JOBS];
static int njobs;
static char *envp[MAX_ENV + 1];

static double uptime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	dprintf(1, "floor: %s at %.2f s\n", buf, uptime());
}

static void die(const char *what)
{
	say("FAILED: %s: %s", what, strerror(errno));
	for (;;)
		pause();
}

static void must_mount(const char *src, const char *dst, const char *type, unsigned long flags,
		       const char *data)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) != 0)
		die(dst);
}

/* Reads a whole small file into a static-lifetime buffer ("" if absent). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	return buf;
}

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	int n = write(fd, value, strlen(value));
	close(fd);
	return n < 0 ? -1 : 0;
}

/* The new root: the floor's tree under a tmpfs, moved over the initramfs. */
static void switch_root(void)
{
	must_mount("tmpfs", "/rw", "tmpfs", 0, "mode=0755");
	mkdir("/rw/upper", 0755);
	mkdir("/rw/work", 0755);
	must_mount("/dev/vdb", "/lower", "squashfs", MS_RDONLY, NULL);
	must_mount("overlay", "/new", "overlay", 0,
		   "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work");
	if (chdir("/new") != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
	    chdir("/") != 0)
		die("switching root");
}

static void mount_system(void)
{
	must_mount("proc", "/proc", "proc", 0, NULL);
	must_mount("sysfs", "/sys", "sysfs", 0, NULL);
	must_mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	must_mount("devpts", "/dev/pts", "devpts", 0, NULL);
	must_mount("tmpfs", "/dev/shm", "tmpfs", 0, NULL);
	must_mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL);
	must_mount("tmpfs", "/run", "tmpfs", 0, "mode=0755");
	must_mount("tmpfs", "/var", "tmpfs", 0, "mode=0755");
	must_mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
	must_mount("/dev/vda", "/system/payload", "squashfs", MS_RDONLY, NULL);
	/* Shared, as containerd and the kubelet expect (mount propagation). */
	if (mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL) != 0)
		die("making / shared");
	static const char *controllers[] = {"+cpuset", "+cpu", "+io", "+memory", "+hugetlb",
					    "+pids", "+rdma", "+misc"};
	/* One at a time: a controller this kernel lacks does not stop the others. */
	for (size_t i = 0; i < sizeof controllers / sizeof *controllers; i++)
		write_file("/sys/fs/cgroup/cgroup.subtree_control", controllers[i]);
	mkdir("/var/log", 0755);
	mkdir("/var/log/floor", 0755);
	mkdir("/var/lib", 0755);
	mkdir("/var/lib/etcd", 0700);
}

static void set_sysctls(void)
{
	char *text = slurp("/floor/sysctls");
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *space = strchr(line, ' ');
		if (!space)
			continue;
		*space = 0;
		if (write_file(line, space + 1) != 0)
			say("cannot set %s: %s", line, strerror(errno));
	}
}

static void addr_of(struct sockaddr *sa, const char *ip)
{
	struct sockaddr_in *in = (struct sockaddr_in *)sa;
	memset(in, 0, sizeof *in);
	in->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &in->sin_addr);
}

static void link_up(int s, const char *name)
{
	struct ifreq r;
	memset(&r, 0, sizeof r);
	strncpy(r.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(s, SIOCGIFFLAGS, &r) != 0)
		die(name);
	r.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &r) != 0)
		die(name);
}

static void set_network(void)
{
	char addr[64], mask[64], gw[64];
	char *net = slurp("/floor/net");
	if (sscanf(net, "%63s %63s %63s", addr, mask, gw) != 3)
		die("/floor/net");
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	link_up(s, "lo");
	struct ifreq r;
	memset(&r, 0, sizeof r);
	strncpy(r.ifr_name, "eth0", IFNAMSIZ - 1);
	addr_of(&r.ifr_addr, addr);
	if (ioctl(s, SIOCSIFADDR, &r) != 0)
		die("eth0 address");
	addr_of(&r.ifr_netmask, mask);
	if (ioctl(s, SIOCSIFNETMASK, &r) != 0)
		die("eth0 netmask");
	link_up(s, "eth0");
	struct rtentry rt;
	memset(&rt, 0, sizeof rt);
	addr_of(&rt.rt_dst, "0.0.0.0");
	addr_of(&rt.rt_genmask, "0.0.0.0");
	addr_of(&rt.rt_gateway, gw);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	if (ioctl(s, SIOCADDRT, &rt) != 0)
		die("default route");
	close(s);
	char *host = slurp("/floor/hostname");
	host[strcspn(host, "\n")] = 0;
	if (sethostname(host, strlen(host)) != 0)
		die("hostname");
}

static void load_env(void)
{
	char *text = slurp("/floor/env");
	int n = 0;
	for (char *line = strtok(text, "\n"); line && n < MAX_ENV; line = strtok(NULL, "\n"))
		envp[n++] = line;
	envp[n] = NULL;
}

static pid_t start(char **argv, const char *name, int joined)
{
	if (njobs == MAX_JOBS)
		die("too many jobs");
	char log[128];
	snprintf(log, sizeof log, "/var/log/floor/%s.log", name);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
		setsid();
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[0], argv, envp);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	struct job *j = &jobs[njobs++];
	j->pid = pid;
	snprintf(j->name, sizeof j->name, "%s", name);
	j->joined = joined;
	return pid;
}

static struct job *job_of(pid_t pid)
{
	for (int i = 0; i < njobs; i++)
		if (jobs[i].pid == pid)
			return &jobs[i];
	return NULL;
}

/* Says that a job ended, with the end of its log when it failed. */
static void ended(struct job *j, int status)
{
	int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	say("%s exited (%s %d)", j->name, WIFEXITED(status) ? "status" : "signal",
	    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	j->pid = 0;
	if (ok)
		return;
	char path[128];
	snprintf(path, sizeof path, "/var/log/floor/%s.log", j->name);
	char *log = slurp(path);
	size_t len = strlen(log);
	dprintf(1, "%s\n", len > 3000 ? log + len - 3000 : log);
}

/* Waits for one child; returns 0 when there are none. */
static int reap_one(void)
{
	int status;
	pid_t pid = waitpid(-1, &status, 0);
	if (pid <= 0)
		return 0;
	struct job *j = job_of(pid);
	if (j) {
		ended(j, status);
		if (j->joined && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			die(j->name);
	}
	return 1;
}

static int joined_left(void)
{
	for (int i = 0; i < njobs; i++)
		if (jobs[i].joined && jobs[i].pid)
			return 1;
	return 0;
}

static void run_plan(void)
{
	char *text = slurp("/floor/plan");
	char *save_line;
	for (char *line = strtok_r(text, "\n", &save_line); line;
	     line = strtok_r(NULL, "\n", &save_line)) {
		char *argv[MAX_ARGS + 1];
		int argc = 0;
		char *save_field;
		for (char *f = strtok_r(line, "\t", &save_field); f && argc < MAX_ARGS;
		     f = strtok_r(NULL, "\t", &save_field))
			argv[argc++] = f;
		argv[argc] = NULL;
		if (argc == 0)
			continue;
		if (!strcmp(argv[0], "wait") && argc == 2) {
			while (access(argv[1], F_OK) != 0)
				usleep(10000);
		} else if (!strcmp(argv[0], "mark") && argc == 2) {
			say("%s", argv[1]);
		} else if (!strcmp(argv[0], "join")) {
			while (joined_left())
				reap_one();
		} else if ((!strcmp(argv[0], "bg") || !strcmp(argv[0], "par")) && argc >= 3) {
			start(argv + 2, argv[1], argv[0][0] == 'p');
		} else {
			errno = EINVAL;
			die(argv[0]);
		}
	}
}

int main(void)
{
	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	int console = open("/dev/console", O_RDWR | O_NOCTTY);
	if (console >= 0) {
		dup2(console, 0);
		dup2(console, 1);
		dup2(console, 2);
	}
	say("init");
	switch_root();
	mount_system();
	set_sysctls();
	set_network();
	load_env();
	run_plan();
	say("plan done");
	for (;;)
		if (!reap_one())
			pause();
}
