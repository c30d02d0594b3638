/* money: ISO 4217 currency table and price checks. */
#include "money.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    char code[4];
    int exponent;
} currency_t;

/* Active ISO 4217 codes (sorted for bsearch) with their minor-unit digits.
 * Funds and precious metals (XAU, XDR, …) are left out: nobody prices
 * goods in them. */
static const currency_t s_currencies[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2},
    {"AUD", 2}, {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2},
    {"BHD", 3}, {"BIF", 0}, {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BRL", 2}, {"BSD", 2},
    {"BTN", 2}, {"BWP", 2}, {"BYN", 2}, {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHF", 2},
    {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"CRC", 2}, {"CUP", 2}, {"CVE", 2}, {"CZK", 2},
    {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2}, {"ERN", 2}, {"ETB", 2},
    {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2},
    {"GMD", 2}, {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2}, {"HTG", 2},
    {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0},
    {"JMD", 2}, {"JOD", 3}, {"JPY", 0}, {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0},
    {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2}, {"LBP", 2},
    {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2},
    {"MKD", 2}, {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2},
    {"MWK", 2}, {"MXN", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2}, {"NIO", 2},
    {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2},
    {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2}, {"RSD", 2},
    {"RUB", 2}, {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2},
    {"SGD", 2}, {"SHP", 2}, {"SLE", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2},
    {"SVC", 2}, {"SYP", 2}, {"SZL", 2}, {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3},
    {"TOP", 2}, {"TRY", 2}, {"TTD", 2}, {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0},
    {"USD", 2}, {"UYU", 2}, {"UZS", 2}, {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2},
    {"XAF", 0}, {"XCD", 2}, {"XOF", 0}, {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2},
    {"ZWL", 2},
};

static int s_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const currency_t *)elem)->code);
}

static const currency_t *s_find(const char *code)
{
    if (!code || strlen(code) != 3)
        return NULL;
    return bsearch(code, s_currencies, sizeof s_currencies / sizeof s_currencies[0],
                   sizeof s_currencies[0], s_cmp);
}

bool money_valid_currency(const char *code) { return s_find(code) != NULL; }

int money_exponent(const char *code)
{
    const currency_t *c = s_find(code);
    return c ? c->exponent : -1;
}

int money_check(const char *field, int64_t minor_units, const char *currency, char *err,
                size_t errlen)
{
    if (!money_valid_currency(currency)) {
        snprintf(err, errlen, "%s.currency: \"%.8s\" is not an ISO 4217 currency code", field,
                 currency ? currency : "");
        return -1;
    }
    if (minor_units < 0) {
        snprintf(err, errlen, "%s.minor_units: must not be negative, got %lld", field,
                 (long long)minor_units);
        return -1;
    }
    if (minor_units > MONEY_MAX_MINOR) {
        snprintf(err, errlen, "%s.minor_units: at most %lld, got %lld", field,
                 (long long)MONEY_MAX_MINOR, (long long)minor_units);
        return -1;
    }
    return 0;
}

char *money_format(int64_t minor_units, const char *currency, char *buf, size_t len)
{
    int exp = money_exponent(currency);
    uint64_t mag = minor_units < 0 ? (uint64_t)0 - (uint64_t)minor_units : (uint64_t)minor_units;
    uint64_t scale = 1;

    /* util_fmt, not snprintf: a quote formats amounts in most of its reasons */
    if (exp < 0) {
        util_fmt(buf, len, "%" PRId64 " %s?", minor_units, currency);
        return buf;
    }
    for (int i = 0; i < exp; i++)
        scale *= 10;
    if (exp == 0) {
        util_fmt(buf, len, "%s%" PRIu64 " %s", minor_units < 0 ? "-" : "", mag, currency);
    } else {
        char frac[8];
        uint64_t f = mag % scale;
        for (int i = exp - 1; i >= 0; i--, f /= 10)
            frac[i] = (char)('0' + f % 10);
        frac[exp] = '\0';
        util_fmt(buf, len, "%s%" PRIu64 ".%s %s", minor_units < 0 ? "-" : "", mag / scale, frac,
                 currency);
    }
    return buf;
}
