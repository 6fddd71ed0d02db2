#pragma once
/*
 * The process's clocks, for the runtime that drives the core (the core
 * itself gets its time through src/core/timer.h).
 */
#include <stdint.h>

/* Monotonic clock in milliseconds. */
uint64_t dv_now_ms(void);
/* The same clock in microseconds. */
uint64_t dv_now_us(void);
/* Monotonic clock in seconds (coarse): the cache's clock. */
uint32_t dv_now_s(void);
