/* status: the call status codes (same numbers as shop.common.v1.Code and
 * gRPC) and their names. */
#ifndef SHOP_STATUS_H
#define SHOP_STATUS_H

typedef enum {
    STATUS_OK = 0,
    STATUS_CANCELLED = 1,
    STATUS_UNKNOWN = 2,
    STATUS_INVALID_ARGUMENT = 3,
    STATUS_DEADLINE_EXCEEDED = 4,
    STATUS_NOT_FOUND = 5,
    STATUS_ALREADY_EXISTS = 6,
    STATUS_PERMISSION_DENIED = 7,
    STATUS_RESOURCE_EXHAUSTED = 8,
    STATUS_FAILED_PRECONDITION = 9,
    STATUS_ABORTED = 10,
    STATUS_OUT_OF_RANGE = 11,
    STATUS_UNIMPLEMENTED = 12,
    STATUS_INTERNAL = 13,
    STATUS_UNAVAILABLE = 14,
    STATUS_DATA_LOSS = 15,
    STATUS_UNAUTHENTICATED = 16,
    /* The runtime's own, never sent: see call_defer in server.h. */
    STATUS_DEFER = 64,
} status_t;

#define STATUS_COUNT 17

/* "OK", "INVALID_ARGUMENT", …; "UNKNOWN" for a number out of range. */
const char *status_name(status_t code);

#endif
