# demo.sh: demo catalogue (a small tea and teaware shop, CNY) and the checked walk-through; sourced by deploy/local/run.
#
# Needs $shopctl. demo_load creates each product only when its first SKU is
# missing (so it runs any number of times); demo_walk <checked> runs the
# walk-through, printing PASS/FAIL per step when <checked> is 1, and returns
# non-zero if a checked step failed.

# jnum <field> <json>: the first integer value of "field" (int64s arrive as
# strings); 0 when absent, as proto3 JSON leaves zero values out.
jnum() {
    local v
    v=$(grep -oE "\"$1\" *: *\"?-?[0-9]+" <<<"$2" | head -n1 | grep -oE -- '-?[0-9]+$' || true)
    echo "${v:-0}"
}
# jstr <field> <json>: the first string value of "field".
jstr() {
    grep -oE "\"$1\" *: *\"[^\"]*\"" <<<"$2" | head -n1 | sed -E 's/.*: *"([^"]*)"/\1/' || true
}

# call <method> <json>: sets $out (stdout+stderr) and $code (shopctl's exit status).
call() {
    code=0
    out=$("$shopctl" call catalog "$1" "$2" 2>&1) || code=$?
}

# pcall <method> <json>: the same against promotions.
pcall() {
    code=0
    out=$("$shopctl" call promotions "$1" "$2" 2>&1) || code=$?
}

show() { printf '%s\n' "$1" | head -n "${2:-12}" | sed 's/^/    /'; }

demo_failed=0
step() { printf '\n--- %s\n' "$*"; }
check() {
    # check <description> <condition exit status>
    if [[ $demo_checked == 1 ]]; then
        if [[ $2 == 0 ]]; then printf '    PASS  %s\n' "$1"; else printf '    FAIL  %s\n' "$1"; demo_failed=1; fi
    fi
}

# sku code, list price (fen), cost (fen), attribute value, low-stock threshold, receipt
s_sku() {
    printf '{"code":"%s","listPrice":{"minorUnits":"%s","currency":"CNY"},"costPrice":{"minorUnits":"%s","currency":"CNY"},"attributes":[{"name":"size","value":"%s"}],"lowStockThreshold":%s}' \
        "$1" "$2" "$3" "$4" "$5"
}

demo_products=(
  'West Lake Longjing green tea, 2024 spring|Pan-fired Longjing from Hangzhou, chestnut aroma; a green tea for every day.|green tea|Xihu Tea Co.|TEA-LONGJING-50G 6800 3900 50g 5 40|TEA-LONGJING-250G 29800 17500 250g 3 25'
  'Biluochun green tea|Spiral-rolled green tea from Dongting, fruity and floral.|green tea|Dongting Shan|TEA-BILUOCHUN-100G 9800 5200 100g 5 30|TEA-BILUOCHUN-250G 22800 12900 250g 3 12'
  'Anxi Tieguanyin oolong|Light-roast Tieguanyin, orchid fragrance, many infusions.|oolong tea|Anxi Garden|TEA-TIEGUANYIN-125G 8800 4600 125g 5 30|TEA-TIEGUANYIN-500G 31800 17800 500g 2 8'
  'Menghai ripe pu-erh cake|A 357 g ripe pu-erh cake, earthy and smooth; keeps for years.|dark tea|Menghai|TEA-PUER-357G 16800 9100 357g 3 15'
  'Yunnan Dianhong black tea|Golden-tip black tea with honey notes.|black tea|Fengqing|TEA-DIANHONG-100G 5800 2900 100g 5 50|TEA-DIANHONG-250G 12800 6900 250g 3 20'
  'Yixing zisha clay teapot|Hand-made purple clay teapot for oolong and pu-erh.|teaware|Yixing Studio|POT-YIXING-150ML 38800 21000 150ml 2 6|POT-YIXING-250ML 45800 25000 250ml 3 2'
  'Jingdezhen porcelain gaiwan|Lidded bowl for brewing green and white teas.|teaware|Jingdezhen Kiln|GAIWAN-WHITE-120ML 6800 2500 white 5 25|GAIWAN-CELADON-120ML 8800 3300 celadon 5 15'
  'Tea cup set|Thin-walled porcelain tasting cups.|teaware|Jingdezhen Kiln|CUP-SET-6 9900 3800 6cups 4 18|CUP-SET-2 3900 1400 2cups 4 30'
)

demo_load() {
    local entry title desc cat brand rest skus first line sc price cost attr thr qty created=0 i
    local -a lines
    printf '\n== demo catalogue\n'
    for entry in "${demo_products[@]}"; do
        IFS='|' read -r title desc cat brand rest <<<"$entry"
        first=${rest%%|*}; first=${first%% *}
        call GetProduct "{\"sku\":\"$first\"}"
        if [[ $code == 0 ]]; then continue; fi
        skus=
        IFS='|' read -ra lines <<<"$rest"
        for line in "${lines[@]}"; do
            read -r sc price cost attr thr qty <<<"$line"
            skus+=${skus:+,}$(s_sku "$sc" "$price" "$cost" "$attr" "$thr")
        done
        call CreateProduct "{\"product\":{\"title\":\"$title\",\"description\":\"$desc\",\"category\":\"$cat\",\"brand\":\"$brand\",\"status\":\"PRODUCT_STATUS_ACTIVE\",\"skus\":[$skus]}}"
        if [[ $code != 0 ]]; then echo "demo: CreateProduct $title failed:"; show "$out"; return 1; fi
        for line in "${lines[@]}"; do
            read -r sc price cost attr thr qty <<<"$line"
            call AdjustStock "{\"sku\":\"$sc\",\"delta\":$qty,\"reason\":\"receipt\",\"note\":\"opening stock\"}"
            if [[ $code != 0 ]]; then echo "demo: receipt for $sc failed:"; show "$out"; return 1; fi
        done
        created=$((created + 1))
    done
    if ((created == 0)); then
        echo "    demo products already loaded; skipped"
        return 0
    fi
    echo "    created $created products with opening stock"
    # A little sales history, so best sellers and the 80/20 report have something to show.
    local -a seed=('TEA-LONGJING-50G 6' 'TEA-LONGJING-50G 4' 'TEA-DIANHONG-100G 5' 'TEA-TIEGUANYIN-125G 3'
                   'CUP-SET-2 2' 'TEA-LONGJING-250G 2' 'GAIWAN-WHITE-120ML 1' 'TEA-DIANHONG-100G 3')
    for i in "${!seed[@]}"; do
        read -r sc qty <<<"${seed[$i]}"
        call ReserveStock "{\"orderId\":\"DEMO-SEED-$i\",\"lines\":[{\"sku\":\"$sc\",\"quantity\":$qty}]}"
        [[ $code == 0 ]] || { echo "demo: seed order $i failed:"; show "$out"; return 1; }
        call ConfirmReservation "{\"orderId\":\"DEMO-SEED-$i\"}"
        [[ $code == 0 ]] || { echo "demo: seed confirm $i failed:"; show "$out"; return 1; }
    done
    echo "    confirmed ${#seed[@]} seed orders"
}

# available <sku>: prints the SKU's available stock (empty on error).
available() {
    call GetStock "{\"skus\":[\"$1\"]}"
    [[ $code == 0 ]] && jnum available "$out"
}

demo_walk() {
    demo_checked=$1
    demo_failed=0
    local run a0 a1 a2 a3 oh0 oh1 last from
    run=$(date +%s)-$$
    local sku=TEA-LONGJING-250G pot=POT-YIXING-150ML

    step 'Search the catalogue for "green tea"'
    call SearchProducts '{"query":"green tea","pageSize":5}'
    show "$out"
    check 'search answers OK' "$code"
    grep -q 'Longjing' <<<"$out"; check 'Longjing is among the hits' $?

    step "Stock receipt: 12 x $sku arrive from the supplier"
    a0=$(available "$sku")
    call AdjustStock "{\"sku\":\"$sku\",\"delta\":12,\"reason\":\"receipt\",\"note\":\"walk-through $run\"}"
    show "$out"
    a1=$(jnum available "$out")
    check 'receipt accepted' "$code"
    [[ -n $a0 && $a1 == $((a0 + 12)) ]]; check "available went from ${a0:-?} to $((${a0:-0} + 12)) (got ${a1:-?})" $?
    # the walk-through sells one teapot each time it runs: receive one, so
    # any number of runs on the same data keep working
    call AdjustStock "{\"sku\":\"$pot\",\"delta\":1,\"reason\":\"receipt\",\"note\":\"walk-through $run\"}"
    check "1 x $pot received as well" "$code"

    step "Reserve stock for order WALK-$run-A: 3 x $sku + 1 x $pot"
    a0=$(available "$sku")
    call ReserveStock "{\"orderId\":\"WALK-$run-A\",\"lines\":[{\"sku\":\"$sku\",\"quantity\":3},{\"sku\":\"$pot\",\"quantity\":1}],\"ttlSeconds\":600}"
    show "$out"
    check 'reservation accepted' "$code"
    [[ $(jstr state "$out") == RESERVATION_STATE_HELD ]]; check 'reservation is HELD' $?
    a1=$(available "$sku")
    [[ -n $a0 && $a1 == $((a0 - 3)) ]]; check "available $sku dropped by 3 (${a0:-?} -> ${a1:-?})" $?

    step "A reservation for more than is available is rejected, all or nothing"
    a2=$(available "$pot")
    call ReserveStock "{\"orderId\":\"WALK-$run-B\",\"lines\":[{\"sku\":\"$sku\",\"quantity\":1},{\"sku\":\"$pot\",\"quantity\":$((${a2:-0} + 5))}]}"
    show "$out"
    [[ $code == 2 ]]; check 'shopctl reports an error status (exit 2)' $?
    grep -q 'FAILED_PRECONDITION' <<<"$out"; check 'status is FAILED_PRECONDITION' $?
    [[ $(jnum requested "$out") == $((${a2:-0} + 5)) && $(jnum available "$out") == "${a2:-x}" ]]
    check "shortage says requested $((${a2:-0} + 5)), available ${a2:-?}" $?
    [[ $(available "$sku") == "$a1" && $(available "$pot") == "$a2" ]]; check 'nothing was reserved' $?

    step "Order WALK-$run-A is paid: confirm its reservation"
    call GetStock "{\"skus\":[\"$sku\"]}"; oh0=$(jnum onHand "$out")
    call ConfirmReservation "{\"orderId\":\"WALK-$run-A\"}"
    show "$out"
    check 'confirmation accepted' "$code"
    [[ $(jstr state "$out") == RESERVATION_STATE_CONFIRMED ]]; check 'reservation is CONFIRMED' $?
    call GetStock "{\"skus\":[\"$sku\"]}"; oh1=$(jnum onHand "$out")
    [[ -n $oh0 && $oh1 == $((oh0 - 3)) && $(jnum available "$out") == "$a1" ]]
    check "on hand ${oh0:-?} -> ${oh1:-?}, available unchanged" $?

    step "Order WALK-$run-C is cancelled: reserve, then release"
    a0=$(available "$sku")
    call ReserveStock "{\"orderId\":\"WALK-$run-C\",\"lines\":[{\"sku\":\"$sku\",\"quantity\":2}]}"
    check 'reservation accepted' "$code"
    call ReleaseReservation "{\"orderId\":\"WALK-$run-C\",\"reason\":\"buyer cancelled\"}"
    show "$out"
    check 'release accepted' "$code"
    [[ $(jstr state "$out") == RESERVATION_STATE_RELEASED ]]; check 'reservation is RELEASED' $?
    a3=$(available "$sku")
    [[ -n $a0 && $a3 == "$a0" ]]; check "available back to ${a0:-?} (got ${a3:-?})" $?

    step 'Low-stock list'
    call ListLowStock '{"limit":10}'
    show "$out"
    check 'low-stock list answers OK' "$code"
    grep -q 'POT-YIXING-250ML' <<<"$out"; check 'POT-YIXING-250ML (2 on hand, threshold 3) is listed' $?

    step 'Best sellers'
    call BestSellers '{"limit":5}'
    show "$out" 20
    check 'best sellers answers OK' "$code"
    grep -q 'TEA-LONGJING-50G' <<<"$out"; check 'TEA-LONGJING-50G (10 units sold) is listed' $?

    step '80/20 report: the fewest SKUs that make 80% of units sold'
    call ParetoReport '{"percent":80}'
    show "$out" 20
    check '80/20 report answers OK' "$code"
    [[ -n $(jnum totalUnits "$out") ]]; check "total units reported ($(jnum totalUnits "$out"))" $?

    step 'The last events of the catalog stream'
    code=0
    out=$("$shopctl" events catalog --from 0 --count 10000 2>&1) || code=$?
    last=$(grep -oE '"sequence" *: *"?[0-9]+' <<<"$out" | tail -n1 | grep -oE '[0-9]+$' || true)
    from=$(( ${last:-0} > 6 ? ${last:-0} - 6 : 0 ))
    code=0
    out=$("$shopctl" events catalog --from "$from" --count 6 2>&1) || code=$?
    show "$out" 40
    check 'events read back' "$code"
    grep -q 'ReservationReleased' <<<"$out"; check 'the release is among the last events' $?

    return "$demo_failed"
}

# Promotions: a package deal, a category sale, a member tier and a welcome
# coupon (created once; ALREADY_EXISTS on later runs is fine).
demo_promotions_load() {
    local i
    printf '\n== demo promotions\n'
    pcall CreateRule '{"rule":{"code":"DEMO-TEA-SET","name":"Longjing with a gaiwan","kind":"RULE_KIND_BUNDLE_PRICE","bundle":[{"sku":"TEA-LONGJING-50G","quantity":1},{"sku":"GAIWAN-WHITE-120ML","quantity":1}],"bundlePrice":{"minorUnits":11800,"currency":"CNY"},"priority":10}}'
    [[ $code == 0 || $out == *ALREADY_EXISTS* ]] || { echo "demo: rule failed:"; show "$out"; return 1; }
    pcall CreateRule '{"rule":{"code":"DEMO-GREEN-10","name":"Green tea week","kind":"RULE_KIND_PERCENT_OFF","scope":"RULE_SCOPE_CATEGORIES","categories":["green tea"],"percentOff":10,"priority":5}}'
    [[ $code == 0 || $out == *ALREADY_EXISTS* ]] || { echo "demo: rule failed:"; show "$out"; return 1; }
    pcall SetTier '{"tier":{"name":"gold","percentOff":5}}'
    [[ $code == 0 ]] || { echo "demo: tier failed:"; show "$out"; return 1; }
    pcall CreateCoupon '{"coupon":{"code":"WELCOME-20","kind":"COUPON_KIND_AMOUNT_OFF","amountOff":{"minorUnits":2000,"currency":"CNY"},"minSpend":{"minorUnits":10000,"currency":"CNY"},"perCustomerLimit":1}}'
    [[ $code == 0 || $out == *ALREADY_EXISTS* ]] || { echo "demo: coupon failed:"; show "$out"; return 1; }
    # promotions learns prices and costs from the catalog's events
    for ((i = 0; i < 100; i++)); do
        pcall Quote '{"lines":[{"sku":"TEA-LONGJING-50G","quantity":1}]}'
        [[ $code == 0 ]] && break
        sleep 0.1
    done
    [[ $code == 0 ]] || { echo "demo: promotions does not know the catalog's products:"; show "$out"; return 1; }
    echo "    rules DEMO-TEA-SET and DEMO-GREEN-10, tier gold, coupon WELCOME-20"
}

demo_promotions_walk() {
    demo_checked=$1
    step 'A gold member quotes Longjing, a gaiwan and Biluochun with coupon WELCOME-20'
    pcall Quote '{"lines":[{"sku":"TEA-LONGJING-50G","quantity":1},{"sku":"GAIWAN-WHITE-120ML","quantity":1},{"sku":"TEA-BILUOCHUN-100G","quantity":1}],"customerId":"demo-customer","tier":"gold","couponCodes":["WELCOME-20"]}'
    local saved
    saved=$(jnum minorUnits "$(grep -A1 '"totalSaved"' <<<"$out")")
    grep -E '"reason"' <<<"$out" | sed -E 's/^ *"reason": "(.*)",?$/    - \1/'
    printf '    you save %d.%02d CNY\n' $((saved / 100)) $((saved % 100))
    check 'quote answers OK' "$code"
    grep -q '"code": "DEMO-TEA-SET"' <<<"$out"; check 'the package deal applies' $?
    grep -q 'gold member: 5% off' <<<"$out"; check 'the gold tier applies, with its reason' $?
    grep -q 'coupon WELCOME-20: 20.00 CNY off' <<<"$out"; check 'the coupon applies, with its reason' $?
    ((saved > 3800)); check 'the buyer saves more than the set and the coupon alone' $?
    return "$demo_failed"
}

# ocall <method> <json> [key]: the same against orders (with an idempotency key).
ocall() {
    code=0
    if [[ -n ${3:-} ]]; then
        out=$("$shopctl" --key "$3" call orders "$1" "$2" 2>&1) || code=$?
    else
        out=$("$shopctl" call orders "$1" "$2" 2>&1) || code=$?
    fi
}

# until_ok <tries> <command...>: runs the command every 0.1 s until it succeeds.
until_ok() {
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
    return 1
}

stock_field() { call GetStock "{\"skus\":[\"$1\"]}"; jnum "$2" "$out"; }

# Orders: a gold member's order with the package deal and a coupon, paid,
# shipped, delivered and reviewed; one cancelled; one imported from a
# marketplace; the morning figures. Each run is a new customer, and the
# catalog first receives what the run will sell.
demo_orders_walk() {
    demo_checked=$1
    local run cust id id2 total before after count addr
    run=$(date +%s)-$$
    cust=demo-buyer-$run
    addr='"shippingAddress":{"name":"Wang Fang","phone":"+86 138 0000 0000","line1":"18 Longjing Road","city":"Hangzhou","region":"Zhejiang","postalCode":"310000","country":"CN"}'
    call AdjustStock '{"sku":"TEA-LONGJING-50G","delta":2,"reason":"receipt","note":"demo restock"}'
    call AdjustStock '{"sku":"GAIWAN-WHITE-120ML","delta":1,"reason":"receipt","note":"demo restock"}'
    call AdjustStock '{"sku":"CUP-SET-2","delta":2,"reason":"receipt","note":"demo restock"}'

    step "$cust places Longjing and a gaiwan (the package deal) with coupon WELCOME-20 as a gold member"
    before=$(stock_field TEA-LONGJING-50G onHand)
    local cart='"lines":[{"sku":"TEA-LONGJING-50G","quantity":1},{"sku":"GAIWAN-WHITE-120ML","quantity":1}]'
    ocall PlaceOrder "{\"customerId\":\"$cust\",$cart,\"tier\":\"gold\",\"couponCodes\":[\"WELCOME-20\"],$addr}" "place-$run"
    id=$(jstr id "$out")
    total=$(jnum minorUnits "$(grep -A1 '"total"' <<<"$out" | tail -n 2)")
    printf '    order %s, total %d.%02d CNY\n' "$id" $((total / 100)) $((total % 100))
    grep -E '"reason": ".+"' <<<"$out" | sed -E 's/^ *"reason": "(.*)",?$/    - \1/'
    check 'the order is placed' "$code"
    grep -q '"code": "DEMO-TEA-SET"' <<<"$out"; check 'priced with the package deal' $?
    grep -q '"WELCOME-20"' <<<"$out"; check 'the coupon is redeemed' $?
    ocall PlaceOrder "{\"customerId\":\"$cust\",$cart,\"tier\":\"gold\",\"couponCodes\":[\"WELCOME-20\"],$addr}" "place-$run"
    [[ $code == 0 && $(jstr id "$out") == "$id" ]]; check 'a retry with the same idempotency key gives the same order' $?

    step "The payment provider confirms ${total} fen; the catalog sells the held stock"
    ocall MarkPaid "{\"orderId\":\"$id\",\"amount\":{\"minorUnits\":\"$total\",\"currency\":\"CNY\"},\"paymentReference\":\"alipay-$run\"}"
    check 'the order is paid' "$code"
    until_ok 50 eval '[[ $(stock_field TEA-LONGJING-50G onHand) == $((before - 1)) ]]'
    check 'the catalog took the unit off its shelf (on hand down by one)' $?
    ocall CancelOrder "{\"orderId\":\"$id\"}"
    [[ $code == 0 ]]; check 'cancelling a paid order before shipping works (refund due)' $?
    # place it again to carry on through shipping
    ocall PlaceOrder "{\"customerId\":\"$cust\",\"lines\":[{\"sku\":\"CUP-SET-2\",\"quantity\":2}],\"tier\":\"gold\",$addr}" "place2-$run"
    id=$(jstr id "$out")
    total=$(jnum minorUnits "$(grep -A1 '"total"' <<<"$out" | tail -n 2)")
    ocall MarkPaid "{\"orderId\":\"$id\",\"amount\":{\"minorUnits\":\"$total\",\"currency\":\"CNY\"},\"paymentReference\":\"alipay2-$run\"}"
    check "a second order $id is placed and paid" "$code"

    step 'Fulfilment: packed, shipped with SF Express, delivered'
    ocall StartFulfilment "{\"orderId\":\"$id\"}"; check 'fulfilling' "$code"
    ocall MarkShipped "{\"orderId\":\"$id\",\"carrier\":\"SF Express\",\"trackingNumber\":\"SF$run\"}"; check 'shipped' "$code"
    ocall CancelOrder "{\"orderId\":\"$id\"}"
    [[ $code == 2 && $out == *FAILED_PRECONDITION* ]]; check 'a shipped order can no longer be cancelled' $?
    ocall MarkDelivered "{\"orderId\":\"$id\"}"; check 'delivered' "$code"

    step 'The buyer reviews the cups; the catalog counts the rating'
    call GetProduct '{"sku":"CUP-SET-2"}'
    count=$(jnum ratingCount "$out")
    ocall PostReview "{\"orderId\":\"$id\",\"sku\":\"CUP-SET-2\",\"customerId\":\"$cust\",\"rating\":5,\"text\":\"Thin, light and beautiful.\"}"
    check 'the review is posted' "$code"
    grep -q 'SENTIMENT_POSITIVE' <<<"$out"; check 'five stars read as positive' $?
    until_ok 50 eval 'call GetProduct '"'"'{"sku":"CUP-SET-2"}'"'"'; [[ $(jnum ratingCount "$out") == $((count + 1)) ]]'
    check 'the product has one more rating' $?

    step 'Another order is cancelled before payment: its stock is held no more'
    before=$(stock_field TEA-LONGJING-50G reserved)
    ocall PlaceOrder "{\"customerId\":\"$cust\",\"lines\":[{\"sku\":\"TEA-LONGJING-50G\",\"quantity\":1}],$addr}" "place3-$run"
    id2=$(jstr id "$out")
    check "order $id2 is placed" "$code"
    ocall CancelOrder "{\"orderId\":\"$id2\",\"reason\":\"ordered by mistake\"}"
    check 'it is cancelled' "$code"
    until_ok 50 eval '[[ $(stock_field TEA-LONGJING-50G reserved) == $before ]]'
    check 'the catalog holds its stock no more' $?

    step 'A marketplace publishes an order; it is imported once'
    local imp="{\"channel\":\"tmall\",\"externalId\":\"TM-$run\",\"customerId\":\"tmall-buyer-7\",\"lines\":[{\"sku\":\"CUP-SET-2\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":3900,\"currency\":\"CNY\"},\"discount\":{\"minorUnits\":400,\"currency\":\"CNY\"}}],$addr,\"paid\":true,\"paymentReference\":\"tmall-pay-$run\"}"
    ocall ImportOrder "$imp"
    id2=$(jstr id "$out")
    check "imported as $id2, paid" "$code"
    ocall ImportOrder "$imp"
    [[ $code == 0 && $(jstr id "$out") == "$id2" ]] && grep -q '"duplicate": true' <<<"$out"
    check 'the same marketplace order again is a duplicate, not a second order' $?

    step "The morning check: today's figures"
    ocall DailySummary "{\"date\":\"$(date -u +%F)\"}"
    check 'the daily summary answers' "$code"
    local day paid aov
    day=$(sed -n '/"day"/,/"previousDay"/p' <<<"$out")
    paid=$(grep -A1 '"paidAmount"' <<<"$day" | tail -n 1 | grep -oE '[0-9]+' | head -n 1)
    aov=$(grep -A1 '"averageOrderValue"' <<<"$day" | tail -n 1 | grep -oE '[0-9]+' | head -n 1)
    printf '    %s: %s orders, %s cancelled (%.1f%%), %s paid for %d.%02d CNY, average %d.%02d CNY\n' \
        "$(jstr date "$day")" "$(jnum orders "$day")" "$(jnum cancelled "$day")" \
        "$(grep -oE '"cancellationRate": [0-9.]+' <<<"$day" | grep -oE '[0-9.]+$' || echo 0)" \
        "$(jnum paidOrders "$day")" $((${paid:-0} / 100)) $((${paid:-0} % 100)) $((${aov:-0} / 100)) $((${aov:-0} % 100))
    return "$demo_failed"
}
