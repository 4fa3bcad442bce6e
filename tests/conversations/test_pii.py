"""pii_mask: phones, ID numbers, bank cards and e-mails masked; look-alikes left alone."""

import random
from datetime import UTC, datetime

import pytest

from conversations import pii
from conversations.pii import (
    PiiResult,
    PiiSpan,
    id_card_is_valid,
    luhn_is_valid,
    pii_mask,
    pii_spans,
)

# Written out independently of the module, from the standards, so a shared mistake cannot pass.
ID_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]  # ISO 7064 MOD 11-2


def id_check_char(first17: str) -> str:
    remainder = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11
    value = (12 - remainder) % 11
    return "X" if value == 10 else str(value)


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass Luhn."""
    for digit in "0123456789":
        number = partial + digit
        doubled = [int(d) * (2 if i % 2 else 1) for i, d in enumerate(reversed(number))]
        if sum(d - 9 if d > 9 else d for d in doubled) % 10 == 0:
            return digit
    raise AssertionError("unreachable")


def wrong_digit(right: str) -> str:
    return "0" if right != "0" else "1"


VALID_ID = "11010519491231002X"  # the textbook sample: Beijing Chaoyang, born 1949-12-31
UNIONPAY_19 = "622202123456789012" + luhn_check_digit("622202123456789012")
VISA_16 = "4111111111111111"
WAYBILL_13 = "123456789012" + luhn_check_digit("123456789012")


def test_reference_checks_agree_with_known_numbers() -> None:
    assert id_check_char(VALID_ID[:17]) == "X"
    assert luhn_check_digit(VISA_16[:15]) == "1"
    assert UNIONPAY_19 == "6222021234567890128"


# --- Chinese mobile numbers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我的手机是13800138000谢谢", "我的手机是138****8000谢谢"),
        ("电话：138 0013 8000。", "电话：138****8000。"),
        ("call 138-0013-8000 please", "call 138****8000 please"),
        ("+86 138 0013 8000", "+86 138****8000"),
        ("+8613800138000", "+86138****8000"),
        ("0086-19912345678", "0086-199****5678"),
        ("13800138000、15912345678", "138****8000、159****5678"),
        ("１３８００１３８０００", "１３８****８０００"),  # full-width digits
    ],
)
def test_phones_are_masked(text: str, masked: str) -> None:
    assert pii_mask(text) == PiiResult(text=masked, kinds=("phone",))


@pytest.mark.parametrize(
    "text",
    [
        "编号12800138000",  # second digit 2: no Chinese mobile prefix
        "流水号138001380001",  # 12 digits: part of a longer run
        "流水号913800138000",
        "138001380",  # too short
    ],
)
def test_phone_look_alikes_stay(text: str) -> None:
    assert pii_mask(text) == PiiResult(text=text, kinds=())


# --- Resident ID numbers --------------------------------------------------------------------


def test_valid_id_keeps_region_and_last_four() -> None:
    assert pii_mask(f"身份证号{VALID_ID}，谢谢") == PiiResult(
        text="身份证号110105********002X，谢谢", kinds=("id_card",)
    )


def test_lowercase_check_character_and_grouped_id() -> None:
    assert pii_mask("id 11010519491231002x").text == "id 110105********002x"
    assert pii_mask("ID: 110105 19491231 002X").text == "ID: 110105********002X"


def test_computed_ids_with_digit_check_characters() -> None:
    for first17 in ("44052419800101001", "32031119700101357", "51010420000229123"):
        number = first17 + id_check_char(first17)
        assert id_card_is_valid(number), number
        assert pii_mask(number) == PiiResult(
            text=f"{number[:6]}********{number[-4:]}", kinds=("id_card",)
        )


def test_id_with_wrong_checksum_is_not_an_id() -> None:
    wrong = VALID_ID[:17] + "1"
    assert not id_card_is_valid(wrong)
    assert not luhn_is_valid(wrong)
    assert pii_mask(wrong) == PiiResult(text=wrong, kinds=())


@pytest.mark.parametrize(
    "first17",
    [
        "11010518991231002",  # born 1899
        "11010520990101002",  # born in the future
        "11010519491332002",  # month 13
        "11010519490230002",  # 30 February
    ],
)
def test_id_needs_a_plausible_birth_date(first17: str) -> None:
    number = first17 + id_check_char(first17)
    assert not id_card_is_valid(number)
    assert "id_card" not in pii_mask(number).kinds


def test_id_born_today_is_valid() -> None:
    first17 = "110105" + datetime.now(tz=UTC).strftime("%Y%m%d") + "001"
    assert id_card_is_valid(first17 + id_check_char(first17))


def test_18_digits_failing_the_id_check_but_passing_luhn_is_a_card() -> None:
    first17 = "62220212345678901"
    last = luhn_check_digit(first17)
    assert id_check_char(first17) != last
    assert pii_mask(f"卡号{first17}{last}") == PiiResult(
        text=f"卡号**** **** **** {first17[-3:]}{last}", kinds=("bank_card",)
    )


# --- Bank cards -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (VISA_16, "**** **** **** 1111"),
        ("4111 1111 1111 1111", "**** **** **** 1111"),
        ("4111-1111-1111-1111", "**** **** **** 1111"),
        (f"我的卡号是{UNIONPAY_19}谢谢", "我的卡号是**** **** **** 0128谢谢"),
        ("卡号 6222 0212 3456 7890 128 可以吗", "卡号 **** **** **** 0128 可以吗"),
        ("amex 3782 822463 10005", "amex **** **** **** 0005"),
        ("4222222222222", "**** **** **** 2222"),  # 13 digits
        ("4222-2222-2222-2", "**** **** **** 2222"),  # 13 digits, 3 hyphens
    ],
)
def test_luhn_valid_cards_keep_last_four(text: str, masked: str) -> None:
    assert pii_mask(text) == PiiResult(text=masked, kinds=("bank_card",))


@pytest.mark.parametrize(
    "text",
    [
        VISA_16[:15] + wrong_digit("1"),
        UNIONPAY_19[:18] + wrong_digit(UNIONPAY_19[18]),
        "6222 0212 3456 7890 121",
        "4111 1111 1111 1111 1234 5678",  # more groups than any card: not cut out of the run
    ],
)
def test_luhn_invalid_cards_stay(text: str) -> None:
    assert pii_mask(text) == PiiResult(text=text, kinds=())


# --- E-mail ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("zhang.san@example.com", "z***@example.com"),
        ("邮箱是zhang@qq.com谢谢", "邮箱是z***@qq.com谢谢"),
        ("write to Li.Si+shop@mail.example.co.uk.", "write to L***@mail.example.co.uk."),
        ("13800138000@163.com", "1***@163.com"),  # one mask for the whole address
    ],
)
def test_emails_keep_first_character_and_domain(text: str, masked: str) -> None:
    assert pii_mask(text) == PiiResult(text=masked, kinds=("email",))


@pytest.mark.parametrize("text", ["a@b", "user@localhost", "@example.com", "价格@100元"])
def test_email_look_alikes_stay(text: str) -> None:
    assert pii_mask(text) == PiiResult(text=text, kinds=())


# --- Everything together, and what must stay -------------------------------------------------


def test_kinds_are_listed_once_in_order_of_appearance() -> None:
    text = f"邮箱 a@example.com，手机 13800138000，卡 {VISA_16}，又一个手机 13912345678"
    assert pii_mask(text) == PiiResult(
        text="邮箱 a***@example.com，手机 138****8000，卡 **** **** **** 1111，"
        "又一个手机 139****5678",
        kinds=("email", "phone", "bank_card"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "订单号 20231234567890123",
        "订单号：2023123456789012",
        "下单时间 2023-12-31 12:30:45，金额 ¥1380.00",
        "2023年12月31日 价格 1,380 元，优惠 138.00",
        f"运单 SF{WAYBILL_13} 已发出",  # Luhn-valid, but a code: glued to letters
        "",
        "hello world",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert pii_mask(text) == PiiResult(text=text, kinds=())


def test_order_number_checks_really_fail() -> None:
    # The false-positive cases above only mean something if their checks do fail.
    for digits in ("20231234567890123", "2023123456789012", "1234567890123"):
        assert not luhn_is_valid(digits), digits


# --- Only long runs of digits are searched -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked", "kinds"),
    [
        ("手机 １３８ ００１３ ８０００", "手机 １３８****８０００", ("phone",)),
        ("卡 ４１１１-１１１１-１１１１-１１１１", "卡 **** **** **** １１１１", ("bank_card",)),
        (
            "身份证 １１０１０５ １９４９１２３１ ００２X",
            "身份证 １１０１０５********００２X",
            ("id_card",),
        ),
        (
            "¥1,380.00，订单 2023-12-31，电话 138-0013-8000，卡 4111 1111 1111 1111",
            "¥1,380.00，订单 2023-12-31，电话 138****8000，卡 **** **** **** 1111",
            ("phone", "bank_card"),
        ),
        # Two runs a separator and a "+" apart: each is searched with its own edges.
        ("13800138000 +8613912345678", "138****8000 +86139****5678", ("phone",)),
    ],
)
def test_separated_and_full_width_numbers_are_still_found(
    text: str, masked: str, kinds: tuple[str, ...]
) -> None:
    assert pii_mask(text) == PiiResult(text=masked, kinds=kinds)


def test_the_plus_before_a_run_belongs_to_the_phone() -> None:
    assert pii_spans("tel +8613800138000") == (
        PiiSpan(start=4, end=18, kind="phone", replacement="+86138****8000"),
    )


def test_a_digit_right_after_the_check_character_makes_no_id() -> None:
    # The "X" ends the run of digits; the digit after it is still read by the look-ahead.
    assert pii_mask(f"{VALID_ID}5") == PiiResult(text=f"{VALID_ID}5", kinds=())


def random_number(rng: random.Random) -> str:
    """A phone, an ID, a Luhn-valid card or any digits, written as a customer might."""
    kind = rng.randrange(4)
    if kind == 0:
        digits = "1" + rng.choice("3456789") + "".join(rng.choices("0123456789", k=9))
    elif kind == 1:
        first17 = f"110105{rng.randint(1950, 2005)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}"
        first17 += "".join(rng.choices("0123456789", k=3))
        digits = first17 + id_check_char(first17)
    elif kind == 2:
        partial = "".join(rng.choices("0123456789", k=rng.randint(12, 18)))
        digits = partial + luhn_check_digit(partial)
    else:
        digits = "".join(rng.choices("0123456789", k=rng.randint(1, 20)))
    written = []
    for digit in digits:
        if digit.isdigit() and rng.random() < 0.2:
            digit = chr(ord("０") + int(digit))
        written.append(digit + (rng.choice([" ", "-", " -", "."]) if rng.random() < 0.1 else ""))
    before = rng.choice(["", "", "+86", "0086 ", "SF", "x@"])
    return before + "".join(written) + rng.choice(["", "", "X", "5", "a", " "])


def test_searching_only_long_digit_runs_finds_what_searching_everything_finds() -> None:
    rng = random.Random(11)
    filler = ["订单", "，", " ", "a.b@example.com", "abc", "¥12.50", "2023-12-31 12:30"]
    found: set[str] = set()
    for _ in range(3000):
        text = "".join(
            random_number(rng) if rng.random() < 0.5 else rng.choice(filler)
            for _ in range(rng.randint(1, 5))
        )
        everywhere = (0, len(text))
        candidates = [
            *pii._id_cards(text, *everywhere),
            *pii._phones(text, *everywhere),
            *pii._bank_cards(text, *everywhere),
            *pii._emails(text),
        ]
        assert pii_spans(text) == pii._disjoint(candidates), text
        found.update(span.kind for span in candidates)
    assert found == {"phone", "id_card", "bank_card", "email"}


def test_spans_are_sorted_and_disjoint() -> None:
    assert pii_spans("a 13800138000 b zhang@example.com") == (
        PiiSpan(start=2, end=13, kind="phone", replacement="138****8000"),
        PiiSpan(start=16, end=33, kind="email", replacement="z***@example.com"),
    )
