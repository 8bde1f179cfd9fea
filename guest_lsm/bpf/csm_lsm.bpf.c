// SPDX-License-Identifier: GPL-2.0
/* An observe-only Container Security Monitor as BPF programs.
 *
 * Two sets of programs share this object. The "lsm" set hooks the LSM
 * interface; the "tp" set are BTF tracepoint twins for kernels that refuse
 * LSM and fentry programs (trampolines forbidden). The loader enables one
 * set with bpf_program__set_autoload. Programs named shared_* load with
 * either set. Every program only reads and reports: each returns 0.
 *
 * Records go to one ring buffer submitted without wakeups; user space
 * consumes it on a timer, since a wakeup per event costs more than the
 * event itself in a micro-VM.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "csm_lsm.h"

#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
#define VM_EXEC 0x4
#define FMODE_WRITE 0x2
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define MAX_ERRNO 4095

#define NR_OPEN 2
#define NR_MMAP 9
#define NR_MPROTECT 10
#define NR_CREAT 85
#define NR_OPENAT 257
#define NR_OPENAT2 437

#define PENDING_MMAP 1
#define PENDING_OPEN 2

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* First writer of an upper-layer overlay file, keyed by the upper inode:
 * it outlives the writer, and an exec or mapping of the file reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct writer_key);
	__type(value, struct writer_val);
} writers SEC(".maps");

struct pending {
	__u32 kind;
	__s32 fd;
	__u64 len;
	__u64 prot;
	__u64 flags;
};

/* A syscall seen at entry whose result decides what to report. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pending);
} pending_calls SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &slot);

	if (value)
		*value += 1;
}

static __always_inline void *reserve(__u64 size)
{
	void *rec = bpf_ringbuf_reserve(&events, size, 0);

	if (!rec)
		count(CNT_RING_FULL);
	return rec;
}

static __always_inline void fill_hdr(struct rec_hdr *hdr, __u32 type, __u32 size)
{
	hdr->type = type;
	hdr->size = size;
	hdr->boot_ns = bpf_ktime_get_boot_ns();
}

static __always_inline struct pid_namespace *task_pidns(struct task_struct *task,
							  __u32 *level)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);

	*level = BPF_CORE_READ(pid, level);
	return BPF_CORE_READ(pid, numbers[*level & 31].ns);
}

static __always_inline __u32 task_ns_pid(struct task_struct *task, __u32 level)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);

	if (BPF_CORE_READ(pid, level) < level)
		return 0;
	return BPF_CORE_READ(pid, numbers[level & 31].nr);
}

static __always_inline void fill_ids(struct proc_ids *ids, struct task_struct *task)
{
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	struct pid_namespace *ns, *parent_ns;
	__u32 level = 0, parent_level = 0;

	ids->tgid = BPF_CORE_READ(task, tgid);
	ids->ppid = BPF_CORE_READ(parent, tgid);
	ids->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	ids->parent_start_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
	ns = task_pidns(task, &level);
	parent_ns = task_pidns(parent, &parent_level);
	ids->pidns_inum = BPF_CORE_READ(ns, ns.inum);
	ids->pidns_level = level;
	ids->ns_pid = task_ns_pid(BPF_CORE_READ(task, group_leader), level);
	ids->ns_ppid = parent_ns == ns ? task_ns_pid(BPF_CORE_READ(parent, group_leader),
						     level) : 0;
}

/* An exec record is assembled here, then copied into the ring at its real
 * size: a fixed-size reservation would let a burst fill the ring with
 * unused argv and envp space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_rec);
} exec_scratch SEC(".maps");

/* Scratch space for one path; bpf_loop callbacks cannot reach the record. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[PATH_SPACE]);
} path_scratch SEC(".maps");

struct walk_ctx {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	__u32 off;
};

/* One step up the tree: a name, or a hop from a mount root to its mountpoint.
 * Run under bpf_loop so the verifier checks one step, not every path. */
static long walk_step(__u32 index, struct walk_ctx *ctx)
{
	struct dentry *dentry = ctx->dentry, *parent;
	struct vfsmount *vfsmnt = ctx->vfsmnt;
	struct mount *mnt = ctx->mnt;
	const unsigned char *name;
	__u32 zero = 0;
	char *buf;
	long n;

	if (dentry == ctx->root_dentry && vfsmnt == ctx->root_mnt)
		return 1;
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		if (up == mnt)
			return 1;
		ctx->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		ctx->mnt = up;
		ctx->vfsmnt = &up->mnt;
		return 0;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	if (parent == dentry || ctx->off > PATH_BYTES - NAME_BYTES)
		return 1;
	buf = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!buf)
		return 1;
	name = BPF_CORE_READ(dentry, d_name.name);
	n = bpf_probe_read_kernel_str(&buf[ctx->off & (PATH_BYTES - 1)], NAME_BYTES, name);
	if (n <= 0)
		return 1;
	ctx->off += n;
	ctx->dentry = parent;
	return 0;
}

static __always_inline __u32 walk_path(struct dentry *dentry, struct vfsmount *vfsmnt,
				       char *out)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct walk_ctx ctx = {
		.dentry = dentry,
		.vfsmnt = vfsmnt,
		.mnt = container_of(vfsmnt, struct mount, mnt),
		.root_dentry = BPF_CORE_READ(task, fs, root.dentry),
		.root_mnt = BPF_CORE_READ(task, fs, root.mnt),
		.off = 0,
	};
	__u32 zero = 0, off;
	char *buf;

	bpf_loop(PATH_COMPONENTS, walk_step, &ctx, 0);
	off = ctx.off;
	buf = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!buf || off == 0 || off > PATH_BYTES)
		return 0;
	bpf_probe_read_kernel(out, off, buf);
	return off;
}

static __always_inline void fill_socket(struct file_info *info, struct file *file)
{
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	info->flags |= FILE_SOCKET;
	info->family = family;
	if (family == AF_INET) {
		/* The destination's type sets how many bytes are read. */
		BPF_CORE_READ_INTO((__u32 *)info->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)info->raddr, sk, __sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO((struct in6_addr *)info->laddr, sk,
				   __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)info->raddr, sk,
				   __sk_common.skc_v6_daddr);
	} else {
		return;
	}
	info->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	info->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (info->rport)
		info->flags |= FILE_REMOTE;
}

/* Return the upper inode of an overlay inode, or NULL if it has none. */
static __always_inline struct inode *overlay_upper(struct inode *inode, __u32 *flags)
{
	struct ovl_inode *oi = container_of(inode, struct ovl_inode, vfs_inode);
	struct dentry *upper = BPF_CORE_READ(oi, __upperdentry);
	struct ovl_entry *oe = BPF_CORE_READ(oi, oe);

	*flags |= FILE_OVERLAY;
	if (oe && BPF_CORE_READ(oe, __numlower) > 0)
		*flags |= FILE_LOWER;
	if (!upper)
		return NULL;
	*flags |= FILE_UPPER;
	return BPF_CORE_READ(upper, d_inode);
}

static __always_inline void writer_key_of(struct writer_key *key, struct inode *inode)
{
	key->ino = BPF_CORE_READ(inode, i_ino);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->pad = 0;
}

static __always_inline void fill_writer(struct file_info *info, struct inode *upper)
{
	struct writer_key key;
	struct writer_val *val;

	writer_key_of(&key, upper);
	val = bpf_map_lookup_elem(&writers, &key);
	if (!val)
		return;
	info->flags |= FILE_WRITER;
	info->writer_tgid = val->tgid;
	info->writer_start_ns = val->start_ns;
}

/* Ring buffer memory is not zeroed, and a large memset is not available. */
static __always_inline void clear_file(struct file_info *info)
{
	__u64 *addrs = (__u64 *)info->laddr;
	int i;

	info->ino = 0;
	info->dev = 0;
	info->mode = 0;
	info->flags = 0;
	info->path_len = 0;
	info->writer_tgid = 0;
	info->family = 0;
	info->writer_start_ns = 0;
	info->lport = 0;
	info->rport = 0;
	info->pad = 0;
	for (i = 0; i < 4; i++)
		addrs[i] = 0;
}

static __always_inline void fill_file(struct file_info *info, struct file *file)
{
	struct inode *inode, *upper;

	clear_file(info);
	if (!file)
		return;
	inode = BPF_CORE_READ(file, f_inode);
	info->flags = FILE_PRESENT;
	info->ino = BPF_CORE_READ(inode, i_ino);
	info->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	info->mode = BPF_CORE_READ(inode, i_mode);
	info->path_len = walk_path(BPF_CORE_READ(file, f_path.dentry),
				   BPF_CORE_READ(file, f_path.mnt), info->path);
	if ((info->mode & S_IFMT) == S_IFSOCK) {
		fill_socket(info, file);
		return;
	}
	if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return;
	upper = overlay_upper(inode, &info->flags);
	if (upper)
		fill_writer(info, upper);
}

static __always_inline struct file *task_fd(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

static __always_inline __u32 read_user_block(char *dst, __u32 cap, unsigned long start,
					     unsigned long end, __u32 *total, __u32 fault)
{
	__u64 len = end > start ? end - start : 0;

	*total = len;
	if (len > cap)
		len = cap;
	if (len == 0)
		return 0;
	if (bpf_probe_read_user(dst, len, (void *)start)) {
		count(fault);
		return 0;
	}
	return len;
}

static __always_inline void report_exec(struct task_struct *task, struct file *file)
{
	struct exec_rec *rec;
	struct mm_struct *mm;
	__u32 zero = 0, off;
	__u64 size;
	int i;

	rec = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!rec)
		return;
	fill_hdr(&rec->hdr, REC_EXEC, sizeof(*rec));
	fill_ids(&rec->ids, task);
	fill_file(&rec->binary, file);
	for (i = 0; i < 3; i++)
		fill_file(&rec->fds[i], task_fd(task, i));
	mm = BPF_CORE_READ(task, mm);
	off = read_user_block(rec->data, ARGV_BYTES, BPF_CORE_READ(mm, arg_start),
			      BPF_CORE_READ(mm, arg_end), &rec->argv_total, CNT_ARGV_FAULT);
	if (off > ARGV_BYTES)
		off = ARGV_BYTES;
	rec->argv_len = off;
	rec->envp_len = read_user_block(&rec->data[off], ENVP_BYTES,
					BPF_CORE_READ(mm, env_start), BPF_CORE_READ(mm, env_end),
					&rec->envp_total, CNT_ENVP_FAULT);
	size = offsetof(struct exec_rec, data) + off + rec->envp_len;
	if (size > sizeof(*rec))
		size = sizeof(*rec);
	rec->hdr.size = size;
	if (bpf_ringbuf_output(&events, rec, size, BPF_RB_NO_WAKEUP))
		count(CNT_RING_FULL);
}

static __always_inline void report_fork(struct task_struct *child)
{
	struct fork_rec *rec;

	/* A new thread is not a new process. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return;
	rec = reserve(sizeof(*rec));
	if (!rec)
		return;
	fill_hdr(&rec->hdr, REC_FORK, sizeof(*rec));
	fill_ids(&rec->ids, child);
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

static __always_inline void report_exit(struct task_struct *task)
{
	struct exit_rec *rec = reserve(sizeof(*rec));

	if (!rec)
		return;
	fill_hdr(&rec->hdr, REC_EXIT, sizeof(*rec));
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->exit_code = BPF_CORE_READ(task, signal, group_exit_code);
	rec->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

static __always_inline void report_memexec(struct file *file, __u32 action, __u64 prot,
					   __u64 reqprot, __u64 vm_flags, __u64 mmap_flags,
					   __u64 start, __u64 end)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct memexec_rec *rec = reserve(sizeof(*rec));

	if (!rec)
		return;
	fill_hdr(&rec->hdr, REC_MEMEXEC, sizeof(*rec));
	rec->pad = 0;
	fill_ids(&rec->ids, task);
	rec->action = action;
	rec->prot = prot;
	rec->reqprot = reqprot;
	rec->old_vm_flags = vm_flags;
	rec->mmap_flags = mmap_flags;
	rec->start = start;
	rec->end = end;
	fill_file(&rec->file, file);
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/* Record the first containerised writer of an upper-layer overlay file. */
static __always_inline void record_writer(struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct writer_key key;
	struct writer_val val = {};
	struct inode *inode, *upper;
	struct write_rec *rec;
	__u32 flags = 0, level = 0;

	if (!file)
		return;
	task_pidns(task, &level);
	if (level == 0)
		return;
	inode = BPF_CORE_READ(file, f_inode);
	if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return;
	upper = overlay_upper(inode, &flags);
	if (!upper)
		return;
	writer_key_of(&key, upper);
	val.tgid = BPF_CORE_READ(task, tgid);
	val.start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	if (bpf_map_update_elem(&writers, &key, &val, BPF_NOEXIST))
		return;
	count(CNT_WRITERS);
	rec = reserve(sizeof(*rec));
	if (!rec)
		return;
	fill_hdr(&rec->hdr, REC_WRITE, sizeof(*rec));
	fill_ids(&rec->ids, task);
	fill_file(&rec->file, file);
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/* ---- LSM hooks ---------------------------------------------------------- */

/* After the point of no return: current runs the new image, and the new
 * stack holds argv and envp. */
SEC("lsm/bprm_committed_creds")
int BPF_PROG(lsm_exec, struct linux_binprm *bprm)
{
	report_exec(bpf_get_current_task_btf(), BPF_CORE_READ(bprm, file));
	return 0;
}

/* The leader is freed once the whole group is gone: the process has ended.
 * task_alloc runs before the child has a pid, so a clone is reported by
 * the shared sched_process_fork program instead. */
SEC("lsm/task_free")
int BPF_PROG(lsm_task_free, struct task_struct *task)
{
	if (BPF_CORE_READ(task, pid) == BPF_CORE_READ(task, tgid))
		report_exit(task);
	return 0;
}

SEC("lsm/mmap_file")
int BPF_PROG(lsm_mmap_file, struct file *file, unsigned long reqprot,
	     unsigned long prot, unsigned long flags)
{
	if (file && (prot & PROT_EXEC))
		report_memexec(file, MEMEXEC_MMAP, prot, reqprot, 0, flags, 0, 0);
	return 0;
}

SEC("lsm/file_mprotect")
int BPF_PROG(lsm_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot)
{
	struct file *file = BPF_CORE_READ(vma, vm_file);
	__u64 vm_flags = BPF_CORE_READ(vma, vm_flags);

	if (file && (prot & PROT_EXEC) && !(vm_flags & VM_EXEC))
		report_memexec(file, MEMEXEC_MPROTECT, prot, reqprot, vm_flags, 0,
			       BPF_CORE_READ(vma, vm_start), BPF_CORE_READ(vma, vm_end));
	return 0;
}

SEC("lsm/file_release")
int BPF_PROG(lsm_file_release, struct file *file)
{
	if (BPF_CORE_READ(file, f_mode) & FMODE_WRITE)
		record_writer(file);
	return 0;
}

/* ---- shared by both sets ------------------------------------------------ */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(shared_fork, struct task_struct *parent, struct task_struct *child)
{
	report_fork(child);
	return 0;
}

/* ---- BTF tracepoint twins ----------------------------------------------- */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	report_exec(task, BPF_CORE_READ(bprm, file));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp_exit, struct task_struct *task, bool group_dead)
{
	if (group_dead)
		report_exit(task);
	return 0;
}

struct vma_ctx {
	__u64 prot;
};

static long mprotect_vma(struct task_struct *task, struct vm_area_struct *vma,
			 struct vma_ctx *ctx)
{
	struct file *file = vma->vm_file;
	__u64 vm_flags = vma->vm_flags;

	if (file && !(vm_flags & VM_EXEC))
		report_memexec(file, MEMEXEC_MPROTECT, ctx->prot, ctx->prot, vm_flags, 0,
			       vma->vm_start, vma->vm_end);
	return 0;
}

static __always_inline bool opens_for_writing(long id, struct pt_regs *regs)
{
	__u64 flags;

	if (id == NR_CREAT)
		return true;
	if (id == NR_OPEN)
		flags = BPF_CORE_READ(regs, si);
	else if (id == NR_OPENAT)
		flags = BPF_CORE_READ(regs, dx);
	else if (id == NR_OPENAT2) {
		struct open_how *how = (struct open_how *)BPF_CORE_READ(regs, dx);

		if (bpf_probe_read_user(&flags, sizeof(flags), &how->flags))
			return false;
	} else
		return false;
	return flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC);
}

static __always_inline void remember(__u32 kind, __s32 fd, __u64 len, __u64 prot,
				     __u64 flags)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending call = {
		.kind = kind, .fd = fd, .len = len, .prot = prot, .flags = flags,
	};

	bpf_map_update_elem(&pending_calls, &tid, &call, BPF_ANY);
}

static __always_inline bool in_container(void)
{
	__u32 level = 0;

	task_pidns(bpf_get_current_task_btf(), &level);
	return level > 0;
}

/* Syscall entry, filtered in the kernel to executable file mappings and to
 * opens for writing from inside a pid namespace. */
SEC("tp_btf/sys_enter")
int BPF_PROG(tp_sys_enter, struct pt_regs *regs, long id)
{
	if (id == NR_MMAP) {
		__u64 prot = BPF_CORE_READ(regs, dx);
		__u64 flags = BPF_CORE_READ(regs, r10);
		__s32 fd = BPF_CORE_READ(regs, r8);

		if ((prot & PROT_EXEC) && !(flags & MAP_ANONYMOUS) && fd >= 0)
			remember(PENDING_MMAP, fd, BPF_CORE_READ(regs, si), prot, flags);
	} else if (id == NR_MPROTECT) {
		struct vma_ctx ctx = { .prot = BPF_CORE_READ(regs, dx) };

		if (ctx.prot & PROT_EXEC)
			bpf_find_vma(bpf_get_current_task_btf(), BPF_CORE_READ(regs, di),
				     mprotect_vma, &ctx, 0);
	} else if (opens_for_writing(id, regs) && in_container()) {
		remember(PENDING_OPEN, -1, 0, 0, 0);
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit, struct pt_regs *regs, long ret)
{
	long id = BPF_CORE_READ(regs, orig_ax);
	struct task_struct *task;
	struct pending *call;
	__u32 tid;

	if (id != NR_MMAP && id != NR_OPEN && id != NR_OPENAT && id != NR_OPENAT2 &&
	    id != NR_CREAT)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	call = bpf_map_lookup_elem(&pending_calls, &tid);
	if (!call)
		return 0;
	task = bpf_get_current_task_btf();
	if (call->kind == PENDING_MMAP && id == NR_MMAP &&
	    (unsigned long)ret < (unsigned long)-MAX_ERRNO)
		report_memexec(task_fd(task, call->fd), MEMEXEC_MMAP, call->prot,
			       call->prot, 0, call->flags, ret, ret + call->len);
	else if (call->kind == PENDING_OPEN && id != NR_MMAP && ret >= 0)
		record_writer(task_fd(task, ret));
	bpf_map_delete_elem(&pending_calls, &tid);
	return 0;
}
