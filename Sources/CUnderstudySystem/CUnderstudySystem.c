#include "CUnderstudySystem.h"

#include <stdlib.h> /* defines __GLIBC__ where the C library is glibc */

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>

int understudy_return_free_memory(void) {
    return malloc_trim(0);
}
#else
int understudy_return_free_memory(void) {
    return 0;
}
#endif

#if defined(__linux__)
#include <sys/prctl.h>

int understudy_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0UL, 0UL, 0UL);
}
#else
int understudy_set_parent_death_signal(int signal) {
    (void)signal;
    return -1;
}
#endif

#if defined(__linux__)
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int understudy_lower_current_thread_priority(int increment) {
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, tid);
    if (current == -1 && errno != 0) return -1;
    return setpriority(PRIO_PROCESS, tid, current + increment);
}
#else
int understudy_lower_current_thread_priority(int increment) {
    (void)increment;
    return -1;
}
#endif
