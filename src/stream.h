/*
 * stream.h - the buffered reader/writer shared by every stream (TCP, pipes,
 * TTY, and TLS), over a small transport interface.
 *
 * A stream handle's struct starts with coru_stream (which starts with
 * coru_handle), so one set of methods (read, read_line, read_bytes,
 * read_until, read_all, write, shutdown, settimeouts, ...) serves every
 * kind. What differs is the transport: how
 * bytes come in and go out.
 *
 * How a transport plugs in (TLS over a memory BIO is the model case):
 *
 *   - Your struct:  struct tls { coru_stream s; uv_idle_t any_uv_handle; ... };
 *     allocate it with coru_handle_alloc(L, &your_type, sizeof, offsetof(the
 *     uv handle)), then coru_stream_init(&t->s, &your_transport).
 *     Register your htype with coru_register_stream_type (every stream's
 *     methods after your own); its on_close must call coru_stream_closing(s)
 *     and its on_free coru_stream_free(s). Its kind must be in
 *     CORU_K_STREAM (CORU_K_TLS is).
 *
 *   - Reading. The core calls tp->read_start(s) when a reader needs bytes
 *     and nothing buffered satisfies it, and tp->read_stop(s) when enough
 *     is buffered and nobody waits (backpressure). Between the two, the
 *     transport hands plaintext to the reader with
 *         coru_stream_feed(s, bytes, n);     (any n > 0; bytes are copied
 *                                             only if the reader leaves some)
 *         coru_stream_feed_end(s, UV_EOF);   (end of data: clean EOF)
 *         coru_stream_feed_end(s, uverr);    (a read error: ECONNRESET, ...)
 *     For TLS: read ciphertext from the underlying stream, BIO_write it into
 *     the read BIO, then loop SSL_read into a scratch buffer and feed each
 *     piece. feed may run Lua (it wakes the reader, which may run at once
 *     and even close the stream): after it returns, check s->base.closing
 *     before touching the transport again.
 *
 *   - Writing. The core calls tp->try_write(s, bufs, n) first (optional;
 *     NULL means "never synchronous"): return the number of bytes taken now
 *     (all of them is the fast path: the writer does not suspend) or a
 *     negative uv error (UV_EAGAIN: nothing taken, queue it). What is left
 *     goes to tp->write(s, w, bufs, n): start an asynchronous write and
 *     return 0, or a negative uv error. The bufs stay valid (anchored by the
 *     core) until the transport calls coru_stream_write_done(s, w, status)
 *     exactly once; w->req is a uv_write_t you may use (uv transports pass
 *     it to uv_write) or ignore. For TLS, SSL_write the plaintext (taken at
 *     once from the writer's view) and pass the ciphertext to the underlying
 *     stream; call write_done when it has been taken.
 *
 *   - Shutdown: tp->shutdown(s, req) starts it (req->req is a uv_shutdown_t
 *     you may use) and later calls coru_stream_shutdown_done(s, req, status).
 *     The core refuses writes after shutdown itself.
 *
 *   - tp->queue_size(s) (optional): bytes queued and not yet sent.
 *
 * A transport backed by a uv stream (tcp, pipe, tty) sets s->uvs; methods
 * that need one (listen, accept, try_write, ...) refuse other transports.
 */
#ifndef CORU_STREAM_H
#define CORU_STREAM_H

#include "coru.h"

typedef struct coru_stream coru_stream;
typedef struct coru_write_req coru_write_req;
typedef struct coru_shutdown_req coru_shutdown_req;

typedef struct coru_transport {
  int (*read_start)(coru_stream *s);
  void (*read_stop)(coru_stream *s);
  int (*try_write)(coru_stream *s, const uv_buf_t *bufs, unsigned n);
  int (*write)(coru_stream *s, coru_write_req *w, const uv_buf_t *bufs, unsigned n);
  int (*shutdown)(coru_stream *s, coru_shutdown_req *r);
  size_t (*queue_size)(coru_stream *s);
} coru_transport;

/* A pending write: the core fills it; the transport only uses req. */
struct coru_write_req {
  uv_write_t req;
  coru_stream *s;
  coru_cont cont;
  int data_ref;          /* anchors the Lua string/table being written */
  coru_deadline *dl;     /* send timeout */
  uv_buf_t *bufs;        /* == small unless many buffers */
  uv_buf_t small[2];
};

struct coru_shutdown_req {
  uv_shutdown_t req;
  coru_stream *s;
  coru_cont cont;
};

/* What a waiting reader wants. */
enum { CORU_RD_NONE = 0, CORU_RD_CHUNK, CORU_RD_LINE, CORU_RD_BYTES, CORU_RD_UNTIL,
       CORU_RD_ALL, CORU_RD_LUV };

struct coru_stream {
  coru_handle base;
  const coru_transport *tp;
  uv_stream_t *uvs;        /* the uv stream of uv transports, else NULL */
  /* bytes received and not yet given to Lua: buf[pos, len) */
  char *buf;
  uint32_t pos, len, cap;
  uint32_t scanned;        /* bytes from pos known to hold no delimiter */
  /* the reader */
  coru_cont rd;
  unsigned char rmode;     /* CORU_RD_* while a reader waits */
  unsigned char reading;   /* tp->read_start is in effect */
  unsigned char eof;       /* the transport said EOF */
  unsigned char shut;      /* shutdown requested: no more writes */
  unsigned char rkeep;     /* the reader keeps the handle */
  unsigned char discard;   /* dropping the rest of an overlong line (its CORU_RD_*) */
  unsigned char stdio_out; /* 1 or 2: the stream on stdout/stderr; C's stdio buffer is flushed before each write */
  int rerr;                /* sticky read error (uv code), 0 if none */
  size_t want;             /* read_bytes: how many */
  char *delim;             /* read_until: the delimiter (malloc'd) */
  size_t dlen;
  size_t max_line;         /* line/delimiter search limit */
  size_t max_all;          /* read_all limit (bytes) */
  size_t dtail;            /* discarding: bytes kept at delim + dlen (a delimiter split across reads) */
  coru_deadline *rdl;      /* read timeout in effect */
  int read_cb_ref;         /* luv read_start callback */
  uint32_t to_connect, to_send, to_read;   /* ms, 0 = none */
  int listen_ref;          /* luv listen callback */
};

/* The methods every stream type has (uvstream.c registers them): the
 * reader's (stream.c) and the writer's (stream_write.c). */
extern const coru_Fn coru_stream_read_fns[];
extern const coru_Fn coru_stream_write_fns[];
extern coru_htype coru_stream_type;     /* accepts every stream kind (for checks) */

void coru_stream_init(coru_stream *s, const coru_transport *tp);
coru_stream *coru_check_stream(lua_State *L, int idx);
/* Transport -> reader. */
void coru_stream_feed(coru_stream *s, const char *p, size_t n);
void coru_stream_feed_end(coru_stream *s, int status);
/* Transport -> writer. */
void coru_stream_write_done(coru_stream *s, coru_write_req *w, int status);
void coru_stream_shutdown_done(coru_stream *s, coru_shutdown_req *r, int status);
/* Hooks for the handle type. */
void coru_stream_closing(coru_stream *s);   /* from on_close: wakes the reader with "closed" */
void coru_stream_free(coru_stream *s);      /* from on_free */

/* Streams backed by a uv stream (tcp, pipe, tty). The union is last so a
 * handle is allocated with the size of its own uv type only. */
typedef struct coru_uvstream {
  coru_stream s;
  union { uv_stream_t stream; uv_tcp_t tcp; uv_pipe_t pipe; uv_tty_t tty; } u;
} coru_uvstream;
#define CORU_UVSTREAM_SIZE(uvtype) (offsetof(coru_uvstream, u) + sizeof(uvtype))
/* Allocate one (box pushed), uv handle not yet initialised: call
 * uv_*_init(&u->u.tcp, ...) next (coru_handle_init_failed on failure). */
coru_uvstream *coru_uvstream_alloc(lua_State *L, const coru_htype *t, size_t size);
extern const coru_transport coru_uv_transport;
/* Common on_close/on_free for uv stream types. */
void coru_uvstream_on_close(coru_handle *h);
void coru_uvstream_on_free(coru_handle *h);

/* Register a stream handle type (uvstream.c): its own methods
 * (t->methods, with their flat names), then every stream's. */
void coru_register_stream_type(lua_State *L, coru_htype *t);
/* Start a tcp (sa) or pipe (pipename) connect in the three modes. */
int coru_connect_start(lua_State *L, coru_uvstream *u, int cbidx, const char *fname,
                       const struct sockaddr *sa, const char *pipename, const char *detail);
/* "inet", "inet6", "unix", "unspec" or a number at idx (nil: AF_UNSPEC). */
int coru_family_arg(lua_State *L, int idx);
int coru_check_port(lua_State *L, int idx);                   /* 0..65535 or argerror */
int coru_opt_flag(lua_State *L, int idx, const char *name);   /* opts table at idx: truthy field? */

/* Address helpers shared by tcp, udp and dns (uvstream.c). */
int coru_parse_addr(lua_State *L, const char *host, int port, struct sockaddr_storage *ss);
void coru_push_addr(lua_State *L, const struct sockaddr *sa);   /* {ip=, port=, family=} */
/* getsockname (peer 0) or getpeername of a TCP or UDP handle: the address, or nil, msg, name. */
int coru_push_sockname(lua_State *L, uv_handle_t *h, int peer);
const char *coru_family_name(int af);
int coru_new_pipe(lua_State *L, int ipc);
#endif
