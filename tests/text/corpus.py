"""corpus.py — deterministic varied text for the tokenizer tests and bench/bench_tokenizer.py.

varied(n, seed): strings mixing many scripts (Latin with accents, Greek, Cyrillic, Arabic, Hebrew,
Devanagari, CJK, Hangul, Thai), combining marks, every kind of whitespace run (\\r\\n, \\t, U+00A0,
U+3000, U+2028, U+0085, trailing spaces), numbers and digit runs (ASCII, Arabic-Indic, Devanagari,
fullwidth, superscripts, fractions, Roman numerals), contractions in every case, punctuation
runs, emoji (skin tones, ZWJ sequences, flags, keycaps), special tokens mid-text, very long words
and empty strings. prose(nbytes, seed): English-like sentences.
"""
import random

WORDS = ("the of and to in is was that for it as with be on not he I by this had are but from or "
         "have an they which one you were her all she there would their we him been has when who "
         "will more no if out so said what up its about into than them can only other new some "
         "could time these two may then do first any my now such like our over man me even most "
         "made after also did many before must through back years where much your way well down "
         "should because each just those people Mr how too little state good very make world still "
         "own see men work long get here between both life being under never day same another know "
         "while last might us great old year off come since against go came right used take three "
         "unlearning tokenizer model gradient forget dataset encoder transformer attention").split()

RANGES = {
    "latin": "abcdefghijklmnopqrstuvwxyzàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿœšžßĀāĂăĄąĆćŁłŃńŚśŹźŻż",
    "latin_up": "ABCDEFGHIJKLMNOPQRSTUVWXYZÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝŒŠŽ",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωςΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩάέήίόύώ",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯіїєґ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئة",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשתךםןףץ",
    "devanagari": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह" + "ािीुूेैोौं्",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切阿钟苦令",
    "hangul": "가나다라마바사아자차카타파하각난닫람맙밧상앙잦찾칼탐팝핫한국어안녕하세요감사합니다",
    "thai": "กขฃคฅฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮะาำิีึืุูเแโใไ่้๊๋",
}
COMBINING = [chr(c) for c in range(0x300, 0x370)] + ["\u0483", "\u05b0", "\u0610", "\u093c", "\u20dd", "\ufe0f"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ", "\u00a0", "\u3000", "\u2028", "\u2029",
          "\u0085", "\u000b", "\u000c", "\u2003", "\u200b", "\u202f", " \t ", "\t\t", "\u1680"]
DIGITS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹", "½¼¾", "ⅠⅡⅢⅫ", "①②③", "𝟎𝟏𝟐"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'Ve",
                "'M", "'LL", "'Ll", "'lL", "'D", "’s", "’ll", "'x", "''", "'", "'s'", "'ll've"]
PUNCT = ["!", "!!!", "?", "?!", "...", "…", ",", ";", ":", "--", "—", "–", "(", ")", "[", "]", "{", "}", "\"",
         "«", "»", "“", "”", "„", "@", "#", "$", "%", "^", "&", "*", "_", "+", "=", "<", ">", "/", "\\", "|",
         "~", "`", "¿", "¡", "©", "®", "™", "€", "£", "¥", "•", "·", "§", "¶", "°", "±", "×", "÷", "→", "★",
         "。", "、", "「", "」", "《", "》", "！", "？", "٪", "؟", "।", "॥"]
EMOJI = ["😀", "😂", "👍", "👍🏽", "👍🏿", "❤️", "❤", "🔥", "🎉", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇫🇷", "🇯🇵", "🇺🇸🇬🇧",
         "1️⃣", "#️⃣", "🤷‍♀️", "🧑‍🤝‍🧑", "😶‍🌫️", "🫠", "🦄", "\U0001f9ff", "☺︎"]
SPECIALS = ["<|endoftext|>", "<|endoftext|><|endoftext|>", "<|endoftext", "|endoftext|>", "<|endoftext|>x",
            "<mask>", " <mask>", "<mask> ", "[CLS]"]


def _word(r):
    k = r.random()
    if k < 0.45:
        w = r.choice(WORDS)
        return w.capitalize() if r.random() < 0.15 else (w.upper() if r.random() < 0.03 else w)
    alpha = RANGES[r.choice(list(RANGES))]
    n = r.randint(1, 12) if alpha is not RANGES["cjk"] else r.randint(1, 6)
    return "".join(r.choice(alpha) for _ in range(n))


def _fragment(r):
    k = r.random()
    if k < 0.5:
        return _word(r)
    if k < 0.58:
        return r.choice(SPACES)
    if k < 0.65:
        d = r.choice(DIGITS)
        return "".join(r.choice(d) for _ in range(r.randint(1, 9)))
    if k < 0.71:
        return _word(r) + r.choice(CONTRACTIONS)
    if k < 0.78:
        return "".join(r.choice(PUNCT) for _ in range(r.randint(1, 4)))
    if k < 0.84:
        return r.choice(EMOJI)
    if k < 0.88:
        return _word(r) + "".join(r.choice(COMBINING) for _ in range(r.randint(1, 3)))
    if k < 0.91:
        return r.choice(SPECIALS)
    if k < 0.93:
        return "".join(r.choice(RANGES["latin"]) for _ in range(r.randint(40, 400)))
    return " " + _word(r)


def varied(n, seed=0):
    r = random.Random(seed)
    out = ["", " ", "  ", "\n", "\r\n", "\t", "a", "'s", " 's", "'S", "''s", "a  b", "a   b", "a \n b", "a\u00a0b",
           "trailing  ", "  leading", "x" * 3000, "é" * 500, "😀" * 200, "1" * 1000, "<|endoftext|>",
           " <|endoftext|> ", "Hello world", "hello   world   ", "I'M YOU'LL we'Re it'S"]
    while len(out) < n:
        m = r.randint(1, 14)
        sep = r.random()
        parts = []
        for _ in range(m):
            parts.append(_fragment(r))
            if sep < 0.7:
                parts.append(" " if r.random() < 0.85 else r.choice(SPACES))
        s = "".join(parts)
        if r.random() < 0.1:
            s = s.rstrip()
        out.append(s)
    return out[:n]


def prose(nbytes, seed=0):
    r = random.Random(seed)
    out, size = [], 0
    while size < nbytes:
        words = [r.choice(WORDS) for _ in range(r.randint(5, 25))]
        words[0] = words[0].capitalize()
        s = " ".join(words)
        if r.random() < 0.2:
            s += ", " + " ".join(r.choice(WORDS) for _ in range(r.randint(3, 10)))
        if r.random() < 0.1:
            s += " in %d" % r.randint(1900, 2030)
        s += r.choice([".", ".", ".", "?", "!"])
        if r.random() < 0.1:
            s += " It's " + r.choice(WORDS) + "'s."
        out.append(s)
        size += len(s.encode()) + 1
    return out
