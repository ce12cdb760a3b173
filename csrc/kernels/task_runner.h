// The thread pool of the CPU kernels: run_tasks splits a kernel's work over persistent worker
// threads (core/thread_pool.h), not threads started per call, so ThreadSanitizer sees every
// synchronisation (csrc/tests/kernels_test.cc runs under it).
//
// One pool serves the process, sized to the largest thread count asked for so far (a larger
// request replaces it; a call in flight keeps the old one alive until it returns). A call with
// num_threads = T runs T claim loops on the pool, so at most T threads work on it whatever the
// pool's size. Tasks are claimed dynamically and must write disjoint outputs: results then do
// not depend on the thread count or on which thread ran a task. Calls from several threads are
// served one after the other. After fork() the child forgets the parent's pool (its threads do
// not exist there) and starts a fresh one on its first parallel call.
#pragma once

#include <cstdint>
#include <functional>

namespace vlarl {

// Runs task(t) for t in [0, num_tasks) on up to num_threads threads, fewer when there is too
// little work: `work` (multiply-adds) below ~2 M per thread runs on the caller alone, since
// waking a thread costs more than it saves. The first exception thrown by a task is rethrown
// here after every started task has ended. num_threads < 1 counts as 1.
void run_tasks(std::int64_t num_tasks, std::int64_t work, int num_threads,
               const std::function<void(std::int64_t)>& task);

// Threads of the process-wide kernel pool now (0 before the first parallel call): for tests.
int kernel_pool_size();

}  // namespace vlarl
