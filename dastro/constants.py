"""Physical and astronomical constants.

Physics constants are in cgs, from one release: CODATA 2022 (the SI-defining constants h, k_B,
c and e are exact). Astronomical constants follow the IAU 2015 nominal values (Resolution B3)
as used by astropy. Each value is checked against ``astropy.constants`` in
``tests/test_constants.py``.
"""

# --- SI-defining constants (exact), cgs ---------------------------------------------------
c = 2.99792458e10  # speed of light [cm s^-1]
h = 6.62607015e-27  # Planck constant [erg s]
k_B = 1.380649e-16  # Boltzmann constant [erg K^-1]
e_esu = 4.803204712570263e-10  # elementary charge [statC] (exact: e[C] * c / 10)
eV = 1.602176634e-12  # electron volt [erg]

# --- measured constants, CODATA 2022, cgs --------------------------------------------------
G = 6.67430e-8  # Newtonian constant of gravitation [cm^3 g^-1 s^-2]
m_e = 9.1093837139e-28  # electron mass [g]
m_p = 1.67262192595e-24  # proton mass [g]
amu = 1.66053906892e-24  # atomic mass constant [g]
a0 = 5.29177210544e-9  # Bohr radius [cm]
Rydberg = 109737.31568157  # Rydberg constant R_inf [cm^-1]
sigma_SB = 5.670374419184431e-5  # Stefan-Boltzmann constant [erg cm^-2 s^-1 K^-4]
sigma_T = 6.6524587051e-25  # Thomson cross-section [cm^2]
hc = h * c  # [erg cm]
k_B_eV = k_B / eV  # Boltzmann constant [eV K^-1]

# --- astronomical constants (IAU 2015 nominal; astropy) -------------------------------------
M_sun = 1.988409870698051e33  # solar mass [g]
R_sun = 6.957e10  # nominal solar radius [cm]
L_sun = 3.828e33  # nominal solar luminosity [erg s^-1]
pc = 3.0856775814913674e18  # parsec [cm]
au = 1.495978707e13  # astronomical unit [cm]
km = 1.0e5  # kilometre [cm]
yr = 3.15576e7  # Julian year [s]

# --- cluster units ---------------------------------------------------------------------------
#: G in the units of cluster dynamics, pc (km/s)^2 / Msun, from G, M_sun and pc above.
G_CLUSTER = G * M_sun / (pc * km**2)
#: The rounded value astro-limepy uses by default (0.025 % above G_CLUSTER); pass it as ``G``
#: to reproduce astro-limepy's physical scalings to the last digit.
G_LIMEPY = 0.004302
#: 1 mas/yr at 1 kpc in km/s (proper motion to tangential velocity: v = K_PM * mu * d).
K_PM = au / km / yr  # km/s per (arcsec/yr * pc) == km/s per (mas/yr * kpc)
