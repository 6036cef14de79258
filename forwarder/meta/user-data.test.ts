import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COUNTRIES } from './countries.js';
import {
  buildUserData,
  normalizeCity,
  normalizeDateOfBirth,
  normalizeEmail,
  normalizeGender,
  normalizeName,
  normalizePhone,
  normalizeState,
  normalizeZip,
  resolveCountry,
} from './user-data.js';

/** Independent of the code under test: SHA-256 of the normalised string Meta documents. */
const sha = (s: string) => createHash('sha256').update(Buffer.from(s, 'utf8')).digest('hex');
const today = new Date('2026-03-01T12:00:00Z');
const country = (c: string) => {
  const found = resolveCountry(c);
  if (!found) throw new Error(`no country ${c}`);
  return found;
};

describe("Meta's documented examples (customer-information-parameters)", () => {
  // Expected outputs copied from Meta's page, not computed here.
  it.each([
    [
      'em',
      { em: '  John_Smith@gmail.com ' },
      '62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f',
    ],
    [
      'ph',
      { ph: '(650)555-1212', country: 'US' },
      'e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176',
    ],
    ['fn', { fn: 'Mary' }, '6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec'],
    ['fn', { fn: '정' }, '8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14'],
    ['fn', { fn: 'Valéry' }, '08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c'],
    // The same name typed with a combining accent (e + U+0301) must hash the same.
    ['fn', { fn: 'Vale\u0301ry' }, '08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c'],
  ] as const)('%s %j', (key, raw, expected) => {
    const { userData } = buildUserData(raw, { now: today });
    expect(userData[key]).toEqual([expected]);
  });
});

describe('buildUserData', () => {
  it('normalises every key as documented and hashes the normalised string', () => {
    const { userData, rejected } = buildUserData(
      {
        em: ' Person@Example.COM ',
        ph: '(650) 555-1212',
        fn: "  D'Arcy-Anne ",
        ln: 'Valéry',
        ge: 'Female',
        db: '2/16/1997',
        ct: 'South San Francisco',
        st: 'California',
        zp: '94035-1234',
        country: 'United States',
        external_id: '  cus_NffrFeUfNV2Hib ',
        client_ip_address: ' 203.0.113.7 ',
        client_user_agent: ' Mozilla/5.0 (X11; Linux x86_64) ',
        fbc: ' fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890 ',
        fbp: 'fb.1.1558571054389.1098115397',
      },
      { now: today },
    );
    expect(rejected).toEqual([]);
    expect(userData).toEqual({
      em: [sha('person@example.com')],
      ph: [sha('16505551212')],
      fn: [sha('darcyanne')],
      ln: [sha('valéry')],
      ge: [sha('f')],
      db: [sha('19970216')],
      ct: [sha('southsanfrancisco')],
      st: [sha('ca')],
      zp: [sha('94035')],
      country: [sha('us')],
      external_id: [sha('cus_NffrFeUfNV2Hib')],
      // Never hashed, only trimmed; fbclid keeps its case.
      client_ip_address: '203.0.113.7',
      client_user_agent: 'Mozilla/5.0 (X11; Linux x86_64)',
      fbc: 'fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890',
      fbp: 'fb.1.1558571054389.1098115397',
    });
  });

  it('passes already-hashed values through (any case, trimmed) and dedupes', () => {
    const hashed = sha('person@example.com');
    const { userData } = buildUserData({
      em: [` ${hashed.toUpperCase()} `, 'Person@example.com', hashed],
      ph: sha('16505551212'),
      country: sha('us'),
    });
    expect(userData.em).toEqual([hashed]);
    expect(userData.ph).toEqual([sha('16505551212')]);
    expect(userData.country).toEqual([sha('us')]);
  });

  it('omits empty keys and reports unusable values without echoing them', () => {
    const { userData, rejected } = buildUserData(
      {
        em: ['  ', 'not-an-email'],
        ph: null,
        fn: '   ',
        ln: '!!!',
        ge: 'x',
        db: '31/31/1990',
        country: 'Atlantis',
        external_id: '',
        client_ip_address: 'not-an-ip',
        client_user_agent: '   ',
        fbc: undefined,
      },
      { now: today },
    );
    expect(userData).toEqual({});
    expect(rejected.map((r) => r.key)).toEqual(['em', 'ln', 'ge', 'db', 'country', 'client_ip_address']);
    for (const r of rejected) {
      expect(r.reason).not.toMatch(/not-an-email|Atlantis|not-an-ip|31\/31/);
    }
  });

  it("uses the customer's country before the default for phone numbers, states and ZIP codes", () => {
    const gb = buildUserData({ ph: '020 7946 0958', country: 'UK' }, { defaultCountry: 'US' }).userData;
    expect(gb.ph).toEqual([sha('442079460958')]);
    const us = buildUserData(
      { ph: '(650) 555-1212', st: 'New York', zp: '10001-0001' },
      { defaultCountry: 'US' },
    ).userData;
    expect(us).toMatchObject({ ph: [sha('16505551212')], st: [sha('ny')], zp: [sha('10001')] });
  });

  it('keeps external_id in one form: trimmed, case kept, hashed', () => {
    const a = buildUserData({ external_id: 'User-42' }).userData.external_id;
    const b = buildUserData({ external_id: ' User-42\t' }).userData.external_id;
    expect(a).toEqual([sha('User-42')]);
    expect(b).toEqual(a);
    expect(buildUserData({ external_id: 42 }).userData.external_id).toEqual([sha('42')]);
  });

  it('treats one value as a list of one (the single-value path and the list path agree)', () => {
    const values = [
      ' Person@Example.COM ',
      'not-an-email',
      sha('x').toUpperCase(),
      '(650) 555-1212',
      4155550101,
    ];
    const keys = ['em', 'ph', 'fn', 'ct', 'st', 'zp', 'country', 'external_id'] as const;
    for (const key of keys) {
      for (const value of values) {
        const one = buildUserData({ [key]: value, country: 'US' }, { now: today });
        const list = buildUserData({ [key]: [value], country: ['US'] }, { now: today });
        expect(one, `${key} ${value}`).toEqual(list);
      }
    }
  });
});

describe('em', () => {
  it.each([
    [' Person@Example.COM ', 'person@example.com'],
    ['JOSÉ@Bücher.DE', 'josé@bücher.de'],
    ['用户@例子.广告', '用户@例子.广告'],
    ['first.last+tag@xn--bcher-kva.de', 'first.last+tag@xn--bcher-kva.de'],
  ])('%j → %j', (input, expected) => expect(normalizeEmail(input)).toBe(expected));
  it.each(['', 'plainaddress', '@example.com', 'a@b', 'a b@example.com'])('rejects %j', (input) =>
    expect(normalizeEmail(input)).toBeUndefined(),
  );
});

describe('ph', () => {
  const us = country('US');
  const gb = country('GB');
  it.each([
    ['(650)555-1212', us, '16505551212'],
    ['650.555.1212', us, '16505551212'],
    ['1 (650) 555-1212', us, '16505551212'],
    ['+1 650 555 1212', us, '16505551212'],
    ['011 44 20 7946 0958', us, '442079460958'],
    ['+1 650-555-1212 ext. 123', us, '16505551212'],
    ['+44 20 7946 0958', undefined, '442079460958'],
    ['+44 (0)20 7946 0958', undefined, '442079460958'],
    ['0044 20 7946 0958', undefined, '442079460958'],
    ['0044 20 7946 0958', us, '442079460958'],
    ['020 7946 0958', gb, '442079460958'],
    ['07911 123456', gb, '447911123456'],
    ['447911123456', gb, '447911123456'],
    ['030 123456', country('DE'), '4930123456'],
    ['06 1234 5678', country('IT'), '390612345678'],
    ['8 (495) 123-45-67', country('RU'), '74951234567'],
    ['16505551212', undefined, '16505551212'],
    ['+１ ６５０ ５５５ １２１２', undefined, '16505551212'],
  ] as const)('%j with %s → %s', (input, c, expected) =>
    expect(normalizePhone(input, c ?? undefined)).toBe(expected),
  );
  it('rejects numbers that cannot carry a country code or are not phone numbers', () => {
    expect(normalizePhone('(650)555-1212')).toBeUndefined();
    expect(normalizePhone('020 7946 0958')).toBeUndefined();
    expect(normalizePhone('call me', us)).toBeUndefined();
    expect(normalizePhone('+1 234', us)).toBeUndefined();
    expect(normalizePhone('+1234567890123456', us)).toBeUndefined();
  });
});

describe('fn, ln, ct', () => {
  it.each([
    ['  Mary ', 'mary'],
    ['Valéry', 'valéry'],
    ["O'Brien", 'obrien'],
    ['Jean-Luc', 'jeanluc'],
    ['Mary Ann', 'maryann'],
    ['ÅSA', 'åsa'],
    ['Dr. Smith, Jr.', 'drsmithjr'],
  ])('name %j → %j', (input, expected) => expect(normalizeName(input)).toBe(expected));
  it.each([
    ['South San Francisco', 'southsanfrancisco'],
    ['St. John’s', 'stjohns'],
    ['Zürich', 'zürich'],
    ['Winston-Salem', 'winstonsalem'],
  ])('city %j → %j', (input, expected) => expect(normalizeCity(input)).toBe(expected));
});

describe('ge', () => {
  it.each([
    ['F', 'f'],
    [' female ', 'f'],
    ['M', 'm'],
    ['Male', 'm'],
    ['other', undefined],
  ])('%j → %s', (input, expected) => expect(normalizeGender(input)).toBe(expected));
});

describe('db', () => {
  it.each([
    ['2/16/1997', '19970216'],
    ['02/16/1997', '19970216'],
    ['1997-02-16', '19970216'],
    ['1997-02-16T00:00:00Z', '19970216'],
    ['19970216', '19970216'],
    ['1997/2/16', '19970216'],
    ['16/02/1997', '19970216'],
    ['16.02.1997', '19970216'],
    ['02.03.1997', '19970302'],
    ['02/03/1997', '19970203'],
    ['16 Feb 1997', '19970216'],
    ['February 16th, 1997', '19970216'],
    ['feb 16 1997', '19970216'],
    ['2000-02-29', '20000229'],
    ['2026-03-01', '20260301'],
  ])('%j → %s', (input, expected) => expect(normalizeDateOfBirth(input, today)).toBe(expected));
  it.each(['1900-13-01', '1999-02-29', '1899-12-31', '2026-03-02', '2/16/97', '13/13/1997', 'soon', ''])(
    'rejects %j',
    (input) => expect(normalizeDateOfBirth(input, today)).toBeUndefined(),
  );
});

describe('st', () => {
  const us = country('us');
  it.each([
    ['California', us, 'ca'],
    ['CA', us, 'ca'],
    [' new york ', us, 'ny'],
    ['US-TX', us, 'tx'],
    ['Washington, D.C.', us, 'dc'],
    ['Puerto Rico', us, 'pr'],
    ['California', undefined, 'ca'],
    ['Ontario', undefined, 'ontario'],
    ['ON', country('CA'), 'on'],
    ['Île-de-France', country('FR'), 'îledefrance'],
    ['Nordrhein-Westfalen', country('DE'), 'nordrheinwestfalen'],
  ] as const)('%j in %s → %s', (input, c, expected) =>
    expect(normalizeState(input, c ?? undefined)).toBe(expected),
  );
  it('rejects a US state it cannot map to a USPS code', () =>
    expect(normalizeState('Calif.', us)).toBeUndefined());
});

describe('zp', () => {
  it.each([
    ['94035', 'US', '94035'],
    ['94035-1234', 'US', '94035'],
    [' 94035 1234 ', 'US', '94035'],
    ['940351234', undefined, '94035'],
    ['M1 1AE', 'GB', 'm11ae'],
    ['SW1A 1AA', undefined, 'sw1a1aa'],
    ['H3Z 2Y7', 'CA', 'h3z2y7'],
    ['1234-567', 'PT', '1234567'],
  ] as const)('%j in %s → %s', (input, c, expected) =>
    expect(normalizeZip(input, c === undefined ? undefined : country(c))).toBe(expected),
  );
  it('rejects a US ZIP without five digits', () =>
    expect(normalizeZip('ABCDE', country('US'))).toBeUndefined());
});

describe('country', () => {
  it.each([
    ['US', 'us'],
    ['us', 'us'],
    ['United States', 'us'],
    ['United States of America', 'us'],
    ['U.S.A.', 'us'],
    ['USA', 'us'],
    ['UK', 'gb'],
    ['United Kingdom', 'gb'],
    ['Great Britain', 'gb'],
    ['DEU', 'de'],
    ['Germany', 'de'],
    ['Deutschland', 'de'],
    ["Côte d'Ivoire", 'ci'],
    ['Cote dIvoire', 'ci'],
    ['Ivory Coast', 'ci'],
    ['South Korea', 'kr'],
    ['Korea, Republic of', 'kr'],
    ['The Netherlands', 'nl'],
    ['Bosnia & Herzegovina', 'ba'],
    ['Congo - Kinshasa', 'cd'],
    ['Türkiye', 'tr'],
    ['FRA', 'fr'],
    ['bra', 'br'],
  ])('%j → %s', (input, expected) => expect(resolveCountry(input)?.alpha2).toBe(expected));
  it.each(['Atlantis', 'XX', 'ZZZ', 'EU', ''])('rejects %j', (input) =>
    expect(resolveCountry(input)).toBeUndefined(),
  );
  it('answers a spelling the same way every time (resolved spellings are remembered)', () => {
    for (let i = 0; i < 3; i++) {
      expect(resolveCountry('Deutschland')?.alpha2).toBe('de');
      expect(resolveCountry('Atlantis')).toBeUndefined();
    }
    // Far more spellings than are remembered at once still resolve.
    for (let i = 0; i < 2_500; i++) expect(resolveCountry(`Atlantis ${i}`)).toBeUndefined();
    expect(resolveCountry(' united kingdom ')?.alpha2).toBe('gb');
  });
});

describe('the ISO 3166-1 table', () => {
  const regionNames = new Intl.DisplayNames(['en'], { type: 'region' });

  it('holds all 249 officially assigned codes, unique, with a calling code for every inhabited one', () => {
    expect(COUNTRIES).toHaveLength(249);
    expect(new Set(COUNTRIES.map((c) => c.alpha2)).size).toBe(249);
    expect(new Set(COUNTRIES.map((c) => c.alpha3)).size).toBe(249);
    for (const c of COUNTRIES) {
      expect(c.alpha2).toMatch(/^[a-z]{2}$/);
      expect(c.alpha3).toMatch(/^[a-z]{3}$/);
      expect(c.callingCode ?? '1').toMatch(/^[1-9]\d{0,2}$/);
    }
    const uninhabited = COUNTRIES.filter((c) => c.callingCode === null).map((c) => c.alpha2);
    expect(uninhabited.sort()).toEqual(['aq', 'bv', 'hm', 'um']);
  });

  it("agrees with the runtime's CLDR region names: every code is a region and its English name resolves back", () => {
    for (const c of COUNTRIES) {
      const name = regionNames.of(c.alpha2.toUpperCase());
      expect(name, c.alpha2).not.toBe(c.alpha2.toUpperCase());
      expect(resolveCountry(name!)?.alpha2, name).toBe(c.alpha2);
    }
  });

  it('maps spot-checked alpha-3 codes and calling codes correctly', () => {
    const spot = Object.fromEntries(COUNTRIES.map((c) => [c.alpha2, [c.alpha3, c.callingCode]]));
    expect(spot).toMatchObject({
      us: ['usa', '1'],
      gb: ['gbr', '44'],
      de: ['deu', '49'],
      fr: ['fra', '33'],
      ca: ['can', '1'],
      ru: ['rus', '7'],
      kz: ['kaz', '7'],
      in: ['ind', '91'],
      cn: ['chn', '86'],
      jp: ['jpn', '81'],
      br: ['bra', '55'],
      za: ['zaf', '27'],
      ie: ['irl', '353'],
      ch: ['che', '41'],
      at: ['aut', '43'],
      nz: ['nzl', '64'],
      sx: ['sxm', '1'],
      ss: ['ssd', '211'],
    });
  });
});
