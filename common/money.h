/* money: validation of shop.common.v1.Money — an ISO 4217 currency and an
 * int64 amount of its minor units. Shared by every service that prices. */
#ifndef SHOP_MONEY_H
#define SHOP_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if `code` is an active ISO 4217 alphabetic code ("CNY", "EUR"). */
bool money_valid_currency(const char *code);

/* Digits after the decimal point of `code` (CNY 2, JPY 0, BHD 3), or -1 if
 * the currency is unknown. */
int money_exponent(const char *code);

/* The most minor units a price or an amount may have (10^12: ten billion
 * of a two-decimal currency), and a cart's worth (10^15): a line's worth,
 * a discount per unit times a quantity and their sums then fit an int64. */
#define MONEY_MAX_MINOR 1000000000000LL
#define MONEY_MAX_CART 1000000000000000LL

/* Checks a Money value for a price: a known currency and 0 <= minor_units
 * <= MONEY_MAX_MINOR. On failure writes a message naming `field` into err
 * and returns -1. */
int money_check(const char *field, int64_t minor_units, const char *currency, char *err,
                size_t errlen) __attribute__((warn_unused_result));

/* Writes "12.50 CNY" (minor units shown with the currency's exponent;
 * "1250 XXX?" for an unknown currency) into buf. Returns buf. */
char *money_format(int64_t minor_units, const char *currency, char *buf, size_t len);

#endif
