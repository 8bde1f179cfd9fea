/* Records the kernel side hands to user space through the ring buffer.
 *
 * The Python mirror of these layouts is guest_lsm/kernel/records.py; change
 * both together. Every record starts with struct rec_hdr.
 */
#ifndef CSM_LSM_H
#define CSM_LSM_H

#define REC_EXEC 1
#define REC_FORK 2
#define REC_EXIT 3
#define REC_MEMEXEC 4
#define REC_WRITE 5

/* Path components are stored leaf first, each NUL-terminated. */
#define PATH_BYTES 512
#define NAME_BYTES 128
#define PATH_SPACE (PATH_BYTES + NAME_BYTES)
#define PATH_COMPONENTS 24

#define ARGV_BYTES 4096
#define ENVP_BYTES 8192

#define FILE_OVERLAY 1
#define FILE_UPPER 2
#define FILE_LOWER 4
#define FILE_SOCKET 8
#define FILE_WRITER 16
#define FILE_PRESENT 32
#define FILE_REMOTE 64

#define MEMEXEC_MPROTECT 1
#define MEMEXEC_MMAP 2

/* Indices of the per-CPU counter array. */
#define CNT_RING_FULL 0
#define CNT_ARGV_FAULT 1
#define CNT_ENVP_FAULT 2
#define CNT_WRITERS 3
#define CNT_SLOTS 8

struct rec_hdr {
	__u32 type;
	__u32 size;
	__u64 boot_ns;
};

struct proc_ids {
	__u32 tgid;
	__u32 ppid;
	__u64 start_ns;
	__u64 parent_start_ns;
	__u32 pidns_inum;
	__u32 pidns_level;
	__u32 ns_pid;
	__u32 ns_ppid;
};

struct file_info {
	__u64 ino;
	__u32 dev;
	__u32 mode;
	__u32 flags;
	__u32 path_len;
	__u32 writer_tgid;
	__u32 family;
	__u64 writer_start_ns;
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 pad;
	char path[PATH_SPACE];
};

struct exec_rec {
	struct rec_hdr hdr;
	struct proc_ids ids;
	__u32 argv_len;
	__u32 argv_total;
	__u32 envp_len;
	__u32 envp_total;
	struct file_info binary;
	struct file_info fds[3];
	/* argv_len bytes of argv, then envp_len bytes of envp: only what was
	 * read goes into the ring. */
	char data[ARGV_BYTES + ENVP_BYTES];
};

struct fork_rec {
	struct rec_hdr hdr;
	struct proc_ids ids;
};

struct exit_rec {
	struct rec_hdr hdr;
	__u32 tgid;
	__u32 exit_code;
	__u64 start_ns;
};

struct memexec_rec {
	struct rec_hdr hdr;
	struct proc_ids ids;
	__u32 action;
	__u32 pad;
	__u64 prot;
	__u64 reqprot;
	__u64 old_vm_flags;
	__u64 mmap_flags;
	__u64 start;
	__u64 end;
	struct file_info file;
};

struct write_rec {
	struct rec_hdr hdr;
	struct proc_ids ids;
	struct file_info file;
};

struct writer_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

struct writer_val {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
};

#endif
