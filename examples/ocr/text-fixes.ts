/**
 * Fixes for what PP-OCR's Chinese-and-English recognizer confuses in Latin text, applied to
 * each recognized line: a zero inside a word of letters is the letter O ("0il", "INV0ICE"),
 * an O, o, l or I inside a number is a digit ("2O48", "l.26"), and full-width punctuation
 * between Latin characters is its ASCII form ("Street， Tel"), and an S before a price with
 * cents is a dollar sign ("S8.04"). Words mixing letters and other digits ("500g", "1L",
 * "A5") are left alone; a quantity "xl" before an amount is "x1"; and a space read
 * between a number and its decimal point ("$59 .77": a monospaced face leaves a wide blank
 * on each side of a full stop, and the recognizer reads a space there) is dropped.
 */

const LETTER = /\p{L}/u;
const DIGIT = /[0-9]/;
/** Characters a number may hold besides digits: 1,234.56 $-12 +3 2026-03-14 12:30 50% */
const NUMERIC = /^[0-9.,:$€£%+\-/]+$/;
const TO_DIGIT: Record<string, string> = { O: "0", o: "0", l: "1", I: "1" };

const S_PRICE = /^S(\d[\d,]*\.\d\d)$/;

function fixWord(word: string): string {
  if (S_PRICE.test(word)) return word.replace(S_PRICE, "$$$1");
  const chars = [...word];
  const letters = chars.filter((c) => LETTER.test(c)).length;
  const digits = chars.filter((c) => DIGIT.test(c)).length;
  // A word of letters with zeros and no other digit: the zeros are O (O next to a letter).
  const zeros = chars.filter((c) => c === "0").length;
  if (zeros > 0 && zeros === digits && letters >= 2) {
    return chars
      .map((c, i) =>
        c === "0" && (LETTER.test(chars[i - 1] ?? "") || LETTER.test(chars[i + 1] ?? ""))
          ? upperOrLower(chars, i)
          : c,
      )
      .join("");
  }
  // A number with a letter or two that look like digits, among at least two digits.
  const lookalikes = chars.filter((c) => c in TO_DIGIT).length;
  if (lookalikes > 0 && lookalikes === letters && lookalikes <= 2 && digits >= 2) {
    const fixed = chars.map((c) => TO_DIGIT[c] ?? c).join("");
    if (NUMERIC.test(fixed)) return fixed;
  }
  return word;
}

/** O or o for a zero at `i`: lower case when the letters after it in the word are. */
function upperOrLower(chars: readonly string[], i: number): string {
  const next = chars.slice(i + 1).find((c) => LETTER.test(c));
  const previous = chars.slice(0, i).findLast((c) => LETTER.test(c));
  const lower = (c: string | undefined) =>
    c !== undefined && c === c.toLowerCase() && c !== c.toUpperCase();
  // "0il", "0live": a capital before lower case letters; "c0ffee": lower case inside.
  return previous !== undefined && lower(previous) && (next === undefined || lower(next))
    ? "o"
    : "O";
}

/** Full-width ASCII forms (U+FF01–FF5E) next to an ASCII letter, digit or space. */
function fixFullWidth(text: string): string {
  const chars = [...text];
  const ascii = (c: string | undefined) => c !== undefined && /[\x20-\x7e]/.test(c);
  return chars
    .map((c, i) => {
      const code = c.codePointAt(0)!;
      if (code < 0xff01 || code > 0xff5e) return c;
      return ascii(chars[i - 1]) || ascii(chars[i + 1]) ? String.fromCodePoint(code - 0xfee0) : c;
    })
    .join("");
}

/** A quantity before an amount: "x1 1.26" (the recognizer reads "xl" as often as "x1"). */
const QUANTITY = /^x[lI]$/;

/** A digit, spaces, then a decimal point or comma before a digit: "59 .77". */
const SPACED_DECIMAL = /(\d) +([.,]\d)/g;

/** The line with the fixes above; other spaces are kept as they are. */
export function fixLatin(text: string): string {
  const parts = fixFullWidth(text).replace(SPACED_DECIMAL, "$1$2").split(/( +)/);
  return parts
    .map((part, i) => {
      if (i % 2 === 1) return part;
      const word = fixWord(part);
      const next = parts[i + 2];
      return QUANTITY.test(word) && next !== undefined && NUMERIC.test(fixWord(next)) ? "x1" : word;
    })
    .join("");
}
