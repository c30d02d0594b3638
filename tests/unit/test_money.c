/* test_money: the currency table and price checks. */
#include <string.h>

#include "check.h"
#include "money.h"

int main(void)
{
    char err[128];

    CHECK(money_valid_currency("CNY"));
    CHECK(money_valid_currency("EUR"));
    CHECK(money_valid_currency("AED"));   /* first of the table */
    CHECK(money_valid_currency("ZWL"));   /* last */
    CHECK(!money_valid_currency("cny"));
    CHECK(!money_valid_currency("XYZ"));
    CHECK(!money_valid_currency("CNYY"));
    CHECK(!money_valid_currency(""));
    CHECK(!money_valid_currency(NULL));
    CHECK_INT(money_exponent("CNY"), 2);
    CHECK_INT(money_exponent("JPY"), 0);
    CHECK_INT(money_exponent("KWD"), 3);
    CHECK_INT(money_exponent("ABC"), -1);

    CHECK_INT(money_check("list_price", 1990, "CNY", err, sizeof err), 0);
    CHECK_INT(money_check("list_price", 0, "CNY", err, sizeof err), 0);
    CHECK_INT(money_check("list_price", -1, "CNY", err, sizeof err), -1);
    CHECK_STR(err, "list_price.minor_units: must not be negative, got -1");
    CHECK_INT(money_check("cost_price", 5, "RMB", err, sizeof err), -1);
    CHECK_STR(err, "cost_price.currency: \"RMB\" is not an ISO 4217 currency code");
    char buf[40];
    CHECK_STR(money_format(1250, "CNY", buf, sizeof buf), "12.50 CNY");
    CHECK_STR(money_format(-5, "CNY", buf, sizeof buf), "-0.05 CNY");
    CHECK_STR(money_format(1500, "JPY", buf, sizeof buf), "1500 JPY");
    CHECK_STR(money_format(1234, "BHD", buf, sizeof buf), "1.234 BHD");
    CHECK_STR(money_format(7, "RMB", buf, sizeof buf), "7 RMB?");
    return check_done();
}
