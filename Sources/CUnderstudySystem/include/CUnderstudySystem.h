#ifndef C_UNDERSTUDY_SYSTEM_H
#define C_UNDERSTUDY_SYSTEM_H

/// System calls Swift cannot reach directly (prctl is variadic in C).

/// Asks the kernel to send `signal` to this process when its parent dies (Linux); returns 0, or -1 elsewhere.
int understudy_set_parent_death_signal(int signal);

/// Returns free heap memory to the system (glibc's malloc_trim(0)); 1 when some was released, 0 otherwise or
/// where the C library has no such call.
int understudy_return_free_memory(void);

/// Lowers the calling thread's scheduling priority by `increment` nice levels (Linux: per thread; a thread may always
/// lower its own priority). Returns 0, or -1 where it cannot (other systems, or an error).
int understudy_lower_current_thread_priority(int increment);

#endif
